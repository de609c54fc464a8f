using System.Text.Json;
using FedEdge.Data;
using FedEdge.Edge.Hosting;
using FedEdge.Edge.Identity;
using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Tests.Agent;
using FedEdge.Edge.Tests.Brokers;
using FedEdge.Protocol;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace FedEdge.Edge.Tests.Hosting;

public sealed class EdgeHostTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string SamplePath()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "FedEdge.sln")))
            directory = directory.Parent;
        return Path.Combine(directory!.FullName, "edge", "FedEdge.Edge", "appsettings.edge.json");
    }

    [Fact]
    public void The_sample_settings_bind_to_every_option()
    {
        var configuration = new ConfigurationBuilder().AddJsonFile(SamplePath()).Build();
        var options = new EdgeAgentOptions();
        configuration.GetSection(EdgeAgentOptions.SectionName).Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        Assert.Equal("/var/lib/fededge", options.StateDirectory);
        Assert.Equal(TimeSpan.FromDays(7), options.Mqtt.SessionExpiry);
        Assert.Equal(256L * 1024 * 1024, options.Outbox.MaxBytes);
        Assert.Equal("ef14", options.Compression.ErrorFeedback);
    }

    [Fact]
    public void Credentials_with_a_missing_field_are_refused_naming_the_field()
    {
        using var federation = new TestFederation();
        var path = _dir.Combine("device.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new { version = 1, deviceId = "dev-1", federation = "fed", mqttPassword = "x", cloudPublicKey = federation.CloudKey.VerificationKey.ToBase64() }));
        var error = Assert.Throws<InvalidDataException>(() => EdgeDeviceIdentity.Load(path));
        Assert.Contains("signingPrivateKey", error.Message);
    }

    [Fact]
    public async Task Invalid_settings_stop_the_host_at_start_with_the_setting_named()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Edge:Compression:Codec"] = "zip" });
        builder.AddFedEdgeEdge();
        using var host = builder.Build();
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("Edge:CredentialsPath", error.Message);
        Assert.Contains("Edge:Compression:Codec", error.Message);
    }

    [Fact]
    public async Task A_host_configured_from_settings_runs_the_agent_from_a_credential_file_and_npy_data()
    {
        using var federation = new TestFederation();
        await using var broker = await StartBrokerAsync(federation);
        var data = TestFederation.Data(64, seed: 5);
        NpyArray.Write<float>(_dir.Combine("x.npy"), data.Features, [data.Count, TestFederation.Features]);
        NpyArray.Write<long>(_dir.Combine("y.npy"), data.Labels, [data.Count]);

        var (host, update) = await FirstUpdateOfHostAsync(federation, broker, new()
        {
            ["Edge:Data:Source"] = $"npy:{_dir.Combine("x.npy")},{_dir.Combine("y.npy")}",
            ["Edge:Compression:Codec"] = "topk:0.1",
        });
        using (host)
        {
            Assert.Equal("topk", update.Codec.Id);
            Assert.Equal(64, update.Envelope.SampleCount);
            Assert.NotNull(host.Services.GetRequiredService<EdgeAgentService>().Agent);
            await host.StopAsync();
        }
    }

    private static async Task<EmbeddedBroker> StartBrokerAsync(TestFederation federation)
    {
        var broker = new EmbeddedBroker();
        broker.AddUser(federation.DeviceId, "device-secret");
        broker.AddUser("cloud", "cloud-secret");
        await broker.StartAsync();
        return broker;
    }

    /// <summary>
    /// Starts a host from the credential file and these settings (plus the test defaults), publishes model v1 as the
    /// cloud would, and returns the running host and the first update it sent, verified against the device key.
    /// </summary>
    private async Task<(IHost Host, VerifiedUpdate Update)> FirstUpdateOfHostAsync(TestFederation federation, EmbeddedBroker broker, Dictionary<string, string?> settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Edge:CredentialsPath"] = WriteCredentials(federation, broker),
            ["Edge:StateDirectory"] = _dir.Combine("state"),
            ["Edge:Training:BatchSize"] = "16",
            ["Edge:Outbox:Fsync"] = "false",
            ["Edge:Mqtt:ReconnectMinDelay"] = "00:00:00.050",
        }.Concat(settings));
        builder.AddFedEdgeEdge();
        var host = builder.Build();
        await host.StartAsync();

        await using var cloud = new MqttLink(new MqttLinkOptions { Broker = broker.Address, ClientId = "cloud", UserName = "cloud", Password = "cloud-secret" });
        await cloud.StartAsync();
        await cloud.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
        foreach (var (topic, payload) in federation.Publish(1, federation.ModelBytes()).Messages())
            await cloud.PublishAsync(topic, payload, retain: true);

        var updateTopic = MqttTopics.Update(TestFederation.Name, federation.DeviceId);
        await Eventually.HoldsAsync(() => broker.Published.Any(p => p.Topic == updateTopic), "an update from the hosted agent", 60);
        var frame = new UpdateReassembler(new ReassemblyOptions()).Accept(federation.DeviceId, broker.Published.First(p => p.Topic == updateTopic).Payload);
        var verified = new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = TestFederation.Name }, federation.DeviceKeys)
            .Verify(frame.Envelope.Span, federation.DeviceId, federation.ParameterCount);
        Assert.True(verified.IsAccepted, verified.ToString());
        return (host, verified.Value);
    }

    /// <summary>The credential file in the format `fededge devices add` writes.</summary>
    private string WriteCredentials(TestFederation federation, EmbeddedBroker broker)
    {
        var credentials = _dir.Combine("device.json");
        File.WriteAllText(credentials, JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["version"] = 1,
            ["deviceId"] = federation.DeviceId,
            ["federation"] = TestFederation.Name,
            ["mqttUserName"] = federation.DeviceId,
            ["mqttPassword"] = "device-secret",
            ["signingPrivateKey"] = Convert.ToBase64String(federation.DeviceKey.ExportPrivateKey()),
            ["signingPublicKey"] = federation.DeviceKey.VerificationKey.ToBase64(),
            ["cloudPublicKey"] = federation.CloudKey.VerificationKey.ToBase64(),
            ["cloudKeyId"] = "cloud",
            ["broker"] = broker.Address.ToString(),
        }));
        return credentials;
    }

    [Fact]
    public async Task A_host_with_a_window_directory_and_drift_monitoring_sends_statistics_of_the_newest_window()
    {
        using var federation = new TestFederation();
        await using var broker = await StartBrokerAsync(federation);
        var windows = Directory.CreateDirectory(_dir.Combine("windows")).FullName;
        foreach (var (number, seed) in new[] { (1, 5), (2, 6) })
        {
            var data = TestFederation.Data(64, seed);
            NpyArray.Write<float>(Path.Combine(windows, $"window-{number:D4}.X.npy"), data.Features, [data.Count, TestFederation.Features]);
            NpyArray.Write<long>(Path.Combine(windows, $"window-{number:D4}.Y.npy"), data.Labels, [data.Count]);
        }

        var (host, update) = await FirstUpdateOfHostAsync(federation, broker, new()
        {
            ["Edge:Data:WindowDirectory"] = windows,
            ["Edge:Drift:Enabled"] = "true",
        });
        using (host)
        {
            var envelope = update.Envelope;
            Assert.Equal(2, envelope.Drift.WindowIndex); // the newest window, compared with window 1
            Assert.NotEmpty(envelope.Drift.PreviousPrototype);
            Assert.Equal(2, envelope.DriftReport.WindowIndex);
            Assert.Equal(FedEdge.Protocol.Messages.DriftKind.None, envelope.DriftReport.Kind); // two samples of one distribution
            Assert.Equal(128, envelope.SampleCount); // no real drift: old and new window
            await host.StopAsync();
        }
    }
}
