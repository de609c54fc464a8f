using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MQTTnet;

namespace FedEdge.Cloud.Benchmarks;

/// <summary>
/// The benchmarks' throw-away cloud: embedded broker and co-hosted silo on free loopback ports, state in a temporary
/// folder that <see cref="DisposeAsync"/> deletes.
/// </summary>
internal sealed class BenchmarkCloud : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly string _directory;

    private BenchmarkCloud(IHost host, string directory) => (_host, _directory) = (host, directory);

    public IServiceProvider Services => _host.Services;

    public int BrokerPort => Services.GetRequiredService<EmbeddedBroker>().Port;

    public static async Task<BenchmarkCloud> StartAsync(bool synchronousFull, CancellationToken cancellationToken)
    {
        var directory = Path.Combine(Path.GetTempPath(), "fededge-bench-" + Guid.NewGuid().ToString("N"));
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.AddSimpleConsole().SetMinimumLevel(LogLevel.Error);
        builder.AddFedEdgeCloud(o =>
        {
            o.DataDirectory = directory;
            o.UseLoopback();
            o.SqliteSynchronousFull = synchronousFull;
        });
        var cloud = new BenchmarkCloud(builder.Build(), directory);
        try
        {
            await cloud._host.StartAsync(cancellationToken);
        }
        catch
        {
            await cloud.DisposeAsync();
            throw;
        }
        return cloud;
    }

    /// <summary>An MQTT 5 client connected to the embedded broker.</summary>
    public async Task<IMqttClient> ConnectAsync(string clientId, string user, string password, CancellationToken cancellationToken,
        Action<IMqttClient>? beforeConnect = null)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        beforeConnect?.Invoke(client);
        await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", BrokerPort).WithClientId(clientId)
            .WithCredentials(user, password).WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).Build(), cancellationToken);
        return client;
    }

    public Task StopAsync(CancellationToken cancellationToken) => _host.StopAsync(cancellationToken);

    public ValueTask DisposeAsync()
    {
        _host.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { }
        return ValueTask.CompletedTask;
    }
}
