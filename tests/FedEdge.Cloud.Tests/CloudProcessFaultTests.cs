using System.Diagnostics;
using System.Text.Json;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// Process-level faults: `fededge cloud` runs as a child process (the built CLI through `dotnet`) and is killed
/// with SIGKILL mid-round, then restarted on the same data directory. The test reads the federation's state
/// through an Orleans client connected to the child's gateway.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class CloudProcessFaultTests
{
    [Fact]
    public async Task CloudKilledMidRound_RestartsAndCompletesTheRound_NoAcceptedUpdateLostNoneCountedTwice()
    {
        using var data = new TempDirectory();
        var dataDir = Path.Combine(data.Path, "cloud");
        var devices = new List<(string Id, string Password, byte[] Key)>();
        var registry = new DeviceRegistry(new CloudDataDirectory(dataDir).RegistryDatabase);
        for (var i = 1; i <= 4; i++)
        {
            var (_, password, key) = registry.Add($"dev-{i}", "f1");
            devices.Add(($"dev-{i}", password, key));
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        var modelFile = Path.Combine(data.Path, "initial.onnx");
        await File.WriteAllBytesAsync(modelFile, TestModels.Logreg());
        var config = Path.Combine(data.Path, "cloud.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new
        {
            Cloud = new
            {
                Federations = new
                {
                    f1 = new
                    {
                        ModelFile = modelFile,
                        Config = new { Model = "logreg", Codec = "fp32", Rule = "mean", Rounds = 0, Mode = "Sync", RoundDeadline = "00:05:00" },
                    },
                },
            },
        }));
        var (brokerPort, siloPort, gatewayPort) = (TestPorts.Reserve(), TestPorts.Reserve(), TestPorts.Reserve());
        string[] arguments = ["cloud", "--data-dir", dataDir, "--port", $"{brokerPort}", "--bind", "127.0.0.1",
            "--silo-port", $"{siloPort}", "--gateway-port", $"{gatewayPort}", "--config", config];

        byte[] resent1, resent3;
        float[] v0;
        int d;
        using (var cloud = StartCloud(arguments))
        {
            await using var client = await OrleansClient.ConnectAsync(gatewayPort, cloud);
            var federation = client.Grains.GetGrain<IFederationGrain>("f1");
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).Phase == FederationPhase.Collecting, "the federation to start", TimeSpan.FromSeconds(30));
            var status = await federation.GetStatusAsync();
            Assert.Equal(4, status.Sampled.Count);
            d = status.ParameterCount;
            v0 = (await federation.GetModelAsync())!.Parameters;

            await using var dev1 = await TestDevice.ConnectAsync(brokerPort, "dev-1", "f1", devices[0].Password, devices[0].Key);
            await using var dev2 = await TestDevice.ConnectAsync(brokerPort, "dev-2", "f1", devices[1].Password, devices[1].Key);
            await using var dev3 = await TestDevice.ConnectAsync(brokerPort, "dev-3", "f1", devices[2].Password, devices[2].Key);
            resent1 = dev1.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0);
            await dev1.PublishEnvelopeAsync(resent1);
            await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Enumerable.Repeat(2f, d).ToArray(), 0));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 2, "two accepted updates");

            // dev-3's update has just been acknowledged by the embedded broker when the process dies without any
            // shutdown. The broker acknowledges an update only once the cloud has ingested it, so it must survive.
            resent3 = dev3.SignedUpdate(Enumerable.Repeat(3f, d).ToArray(), 0);
            await dev3.PublishEnvelopeAsync(resent3);
            cloud.Kill();
        }

        using (var cloud = StartCloud(arguments))
        {
            await using var client = await OrleansClient.ConnectAsync(gatewayPort, cloud);
            var federation = client.Grains.GetGrain<IFederationGrain>("f1");
            var status = await federation.GetStatusAsync();
            Assert.Equal(0, status.ModelVersion);
            Assert.Equal(3, status.PendingUpdates); // every update whose PUBACK a device received survived the kill
            Assert.Equal(status.PendingUpdates, status.AcceptedTotal);

            // As the edge outbox does after a reconnect, dev-1 and dev-3 send their updates again (same update ids).
            await using var dev1 = await TestDevice.ConnectAsync(brokerPort, "dev-1", "f1", devices[0].Password, devices[0].Key);
            await using var dev3 = await TestDevice.ConnectAsync(brokerPort, "dev-3", "f1", devices[2].Password, devices[2].Key);
            await using var dev4 = await TestDevice.ConnectAsync(brokerPort, "dev-4", "f1", devices[3].Password, devices[3].Key);
            await dev1.PublishEnvelopeAsync(resent1);
            await dev3.PublishEnvelopeAsync(resent3);
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 3, "dev-3's update to be pending");
            await dev4.PublishEnvelopeAsync(dev4.SignedUpdate(Enumerable.Repeat(6f, d).ToArray(), 0));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "the round to complete after the restart", TimeSpan.FromSeconds(30));

            status = await federation.GetStatusAsync();
            var round = Assert.Single(status.History);
            Assert.Equal(4, round.Updates);
            Assert.Equal(4, status.AcceptedTotal);
            var v1 = (await federation.GetModelAsync())!.Parameters;
            for (var i = 0; i < d; i++) Assert.Equal(v0[i] + 3f, v1[i], 1e-5f); // mean of 1, 2, 3, 6: each counted once
            var stats1 = await client.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync();
            Assert.Equal(1, stats1.Accepted);
            Assert.Equal(1, stats1.Rejected[RejectionReason.Replay]);
            await cloud.StopAsync();
        }
    }

    /// <summary>
    /// `fededge cloud --federation F --model-file M`: any ONNX model, not only a zoo one, starts a federation from the
    /// command line; a missing file is refused before anything starts, naming the path.
    /// </summary>
    [Fact]
    public async Task TheCloudStartsAFederationFromAnOnnxFileGivenOnTheCommandLine_AndRefusesAMissingFile()
    {
        using var data = new TempDirectory();
        var modelFile = Path.Combine(data.Path, "sensor-mlp.onnx");
        await File.WriteAllBytesAsync(modelFile, Google.Protobuf.MessageExtensions.ToByteArray(FedEdge.Training.Zoo.ModelZoo.Create("mlp", [6], classes: 3, seed: 2)));
        var (brokerPort, siloPort, gatewayPort) = (TestPorts.Reserve(), TestPorts.Reserve(), TestPorts.Reserve());
        string[] common = ["cloud", "--data-dir", Path.Combine(data.Path, "cloud"), "--port", $"{brokerPort}", "--bind", "127.0.0.1",
            "--silo-port", $"{siloPort}", "--gateway-port", $"{gatewayPort}", "--federation", "f1", "--rule", "mean", "--codec", "fp32"];

        using (var missing = StartCloud([.. common, "--model-file", Path.Combine(data.Path, "absent.onnx")]))
        {
            await Eventually.HoldsAsync(() => missing.HasExited, "the cloud to refuse the missing model file");
            Assert.NotEqual(0, missing.ExitCode);
            Assert.True(missing.OutputContains("--model-file: no file at"), missing.OutputTail);
        }

        using var cloud = StartCloud([.. common, "--model-file", modelFile]);
        await using var client = await OrleansClient.ConnectAsync(gatewayPort, cloud);
        var federation = client.Grains.GetGrain<IFederationGrain>("f1");
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).Phase == FederationPhase.Collecting, "the federation to start", TimeSpan.FromSeconds(30));
        var status = await federation.GetStatusAsync();
        Assert.Equal(6 * 128 + 128 + 128 * 3 + 3, status.ParameterCount); // the file's MLP (6 → 128 → 3), not the zoo's default CNN
        Assert.Equal("sensor-mlp", status.Config?.Model);
        await cloud.StopAsync();
    }

    /// <summary>`fededge cloud …` as a child process; a process crash, not power loss, so SQLite need not sync fully.</summary>
    private static ServerProcess StartCloud(IEnumerable<string> arguments) =>
        FedEdgeCli.Start(arguments, new Dictionary<string, string>
        {
            ["FEDEDGE_Cloud__SqliteSynchronousFull"] = "false",
            ["Logging__LogLevel__Default"] = "Warning",
        });

    /// <summary>An Orleans client of the child's silo (retried while the silo starts).</summary>
    private sealed class OrleansClient : IAsyncDisposable
    {
        private readonly IHost _host;

        private OrleansClient(IHost host) => _host = host;

        public IGrainFactory Grains => _host.Services.GetRequiredService<IClusterClient>();

        public static async Task<OrleansClient> ConnectAsync(int gatewayPort, ServerProcess cloud)
        {
            var deadline = DateTime.UtcNow.AddSeconds(45);
            while (true)
            {
                Assert.False(cloud.HasExited, $"the cloud process exited:\n{cloud.OutputTail}");
                var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
                builder.Logging.SetMinimumLevel(LogLevel.Critical);
                builder.UseOrleansClient(c => c.UseLocalhostClustering(gatewayPort, serviceId: "fededge", clusterId: "fededge"));
                var host = builder.Build();
                try
                {
                    await host.StartAsync();
                    return new OrleansClient(host);
                }
                catch (Exception) when (DateTime.UtcNow < deadline)
                {
                    host.Dispose();
                    await Task.Delay(500);
                }
                catch (Exception e)
                {
                    host.Dispose();
                    throw new TimeoutException($"no Orleans gateway on port {gatewayPort}:\n{cloud.OutputTail}", e);
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await _host.StopAsync(TimeSpan.FromSeconds(5));
            }
            finally
            {
                _host.Dispose();
            }
        }
    }
}
