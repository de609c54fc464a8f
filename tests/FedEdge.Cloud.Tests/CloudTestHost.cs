using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Formatter;

namespace FedEdge.Cloud.Tests;

/// <summary>Starts the whole cloud (silo + embedded broker, or an external broker) in-process on free loopback ports.</summary>
public sealed class CloudTestHost : IAsyncDisposable
{
    private CloudTestHost(IHost host, CloudOptions options)
    {
        Host = host;
        Options = options;
    }

    public IHost Host { get; }
    public CloudOptions Options { get; }
    public IServiceProvider Services => Host.Services;
    public DeviceRegistry Registry => Services.GetRequiredService<DeviceRegistry>();
    public IGrainFactory Grains => Services.GetRequiredService<IGrainFactory>();

    public int BrokerPort => Options.UsesEmbeddedBroker ? Services.GetRequiredService<EmbeddedBroker>().Port : Options.ExternalBrokerEndpoint().Port;

    /// <param name="afterCloud">Changes to the services once the cloud registered its own (to wrap one of them).</param>
    public static async Task<CloudTestHost> StartAsync(string dataDirectory, Action<CloudOptions>? configure = null, Action<HostApplicationBuilder>? configureHost = null,
        Action<IServiceCollection>? afterCloud = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        configureHost?.Invoke(builder);
        builder.Logging.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning);
        var options = new CloudOptions();
        builder.AddFedEdgeCloud(o =>
        {
            o.DataDirectory = dataDirectory;
            o.UseLoopback(TestPorts.Reserve());
            (o.SiloPort, o.GatewayPort) = (TestPorts.Reserve(), TestPorts.Reserve()); // below the ephemeral range, like every test port
            o.SqliteSynchronousFull = false;
            configure?.Invoke(o);
            foreach (var p in typeof(CloudOptions).GetProperties()) if (p.CanWrite) p.SetValue(options, p.GetValue(o));
        });
        afterCloud?.Invoke(builder.Services);
        var host = builder.Build();
        await host.StartAsync();
        return new CloudTestHost(host, options);
    }

    /// <summary>Connects an MQTT v5 client; returns the client and the CONNACK result (not throwing on refusal).</summary>
    public async Task<(IMqttClient Client, MqttClientConnectResult? Result)> ConnectAsync(string clientId, string userName, string password, Action<MqttClientOptionsBuilder>? configure = null)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var builder = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", BrokerPort)
            .WithClientId(clientId)
            .WithCredentials(userName, password)
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .WithTimeout(TimeSpan.FromSeconds(5));
        configure?.Invoke(builder);
        try
        {
            var result = await client.ConnectAsync(builder.Build());
            return (client, result);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            return (client, null);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Host.StopAsync(TimeSpan.FromSeconds(20));
        }
        finally
        {
            if (Host is IAsyncDisposable asyncDisposable) await asyncDisposable.DisposeAsync();
            else Host.Dispose();
        }
    }
}
