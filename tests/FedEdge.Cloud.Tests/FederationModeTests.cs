using FedEdge.Cloud.Abstractions;
using FedEdge.Compression;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

[Collection(ServerCollection.Name)]
public sealed class FederationModeTests
{
    /// <summary>
    /// FedBuff adds each payload straight into its sum (the bridge does not decode for it): constant updates decode
    /// exactly under both codecs (a sign block of c's has scale c), so both give the same model.
    /// </summary>
    [Theory]
    [InlineData("fp32")]
    [InlineData("sign:block=4096")]
    public async Task FedBuffAppliesEveryKUpdates_WeightingStaleOnesAndDroppingTooStaleOnes(string codecSpec)
    {
        var codec = UpdateCodecs.Parse(codecSpec);
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await using var dev1 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-1", "fa");
        await using var dev2 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-2", "fa");
        var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
        var config = new FederationConfig
        {
            Model = "logreg",
            Codec = codec.Spec,
            Rule = "mean",
            Rounds = 0,
            Mode = FederationMode.FedBuff,
            BufferSize = 2,
            MaxStaleness = 1,
            ServerLearningRate = 1.0,
        };
        var d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;
        float[] Delta(float value) => Enumerable.Repeat(value, d).ToArray();

        // v1: two fresh updates (τ = 0): x += (2 + 4)/2 = 3.
        await dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(2), 0, codec: codec));
        await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Delta(4), 0, codec: codec));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "v1");

        // v2: one fresh (τ = 0) and one on v0 (τ = 1, weight 1/√2): x += (2 + 4/√2)/2.
        await dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(2), 1, codec: codec));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 1, "one buffered update");
        await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Delta(4), 0, codec: codec));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 2, "v2");

        // τ = 2 exceeds the cut-off of 1.
        await dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(100), 0, codec: codec));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).RejectedTotal.GetValueOrDefault(RejectionReason.TooStale) == 1, "a too-stale rejection");

        var v2 = (await federation.GetModelAsync())!;
        var expected = 3f + (2f + 4f / MathF.Sqrt(2f)) / 2f;
        for (var i = 0; i < d; i++) Assert.Equal(v0[i] + expected, v2.Parameters[i], 1e-4f);
        Assert.Equal(0, (await federation.GetStatusAsync()).PendingUpdates);
    }

    /// <summary>
    /// FedBuff keeps taking updates into the next buffer while a version is written: with 12 devices publishing at once and
    /// K = 5, every accepted update is aggregated exactly once or still pending, in memory and after a restart.
    /// </summary>
    [Fact]
    public async Task FedBuffUpdatesArrivingDuringACommitAreNeitherLostNorCountedTwice()
    {
        using var data = new TempDirectory();
        var config = new FederationConfig
        {
            Model = "logreg",
            Codec = "fp32",
            Rule = "mean",
            Rounds = 0,
            Mode = FederationMode.FedBuff,
            BufferSize = 5,
            MaxStaleness = 100,
        };
        async Task CheckAsync(CloudTestHost cloud)
        {
            var status = await cloud.Grains.GetGrain<IFederationGrain>("fa").GetStatusAsync();
            Assert.Equal(4, status.ModelVersion);
            Assert.Equal([5, 5, 5, 5], status.History.Select(h => h.Updates));
            Assert.Equal(4, status.PendingUpdates);
            Assert.Equal(24, status.AcceptedTotal);
        }

        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            var devices = new List<TestDevice>();
            for (var i = 0; i < 12; i++) devices.Add(await TestDevice.RegisterAndConnectAsync(cloud, $"dev-{i}", "fa"));
            var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
            var d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
            await Task.WhenAll(devices.Select(async device =>
            {
                for (var u = 0; u < 2; u++) await device.PublishEnvelopeAsync(device.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0));
            }));
            var metrics = cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();
            await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted == 24), "24 accepted updates");
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 4, "v4");
            await CheckAsync(cloud);
            foreach (var device in devices) await device.DisposeAsync();
        }
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
            await CheckAsync(cloud);
    }

    /// <summary>The last version of a FedBuff federation with a round limit admits no update for a next buffer that would never be applied.</summary>
    [Fact]
    public async Task FedBuffWithARoundLimitRefusesUpdatesArrivingDuringItsLastCommit()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var devices = new List<TestDevice>();
        for (var i = 0; i < 8; i++) devices.Add(await TestDevice.RegisterAndConnectAsync(cloud, $"dev-{i}", "fa"));
        var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
        var config = new FederationConfig
        {
            Model = "logreg",
            Codec = "fp32",
            Rule = "mean",
            Rounds = 1,
            Mode = FederationMode.FedBuff,
            BufferSize = 2,
            MaxStaleness = 10,
        };
        var d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        await Task.WhenAll(devices.Select(device => device.PublishEnvelopeAsync(device.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0))));
        var metrics = cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted + metrics.RejectedByReason.Values.Sum() == 8), "8 answered updates");

        var status = await federation.GetStatusAsync();
        Assert.Equal(1, status.ModelVersion);
        Assert.Equal(FederationPhase.Finished, status.Phase);
        Assert.Equal(0, status.PendingUpdates);
        Assert.Equal(2, metrics.Accepted);
        Assert.Equal(6, metrics.RejectedByReason.GetValueOrDefault(RejectionReason.NotAccepting));
        foreach (var device in devices) await device.DisposeAsync();
    }

    [Theory]
    [InlineData("mean")]
    [InlineData("trimmed-mean")]
    public async Task SyncRoundScalesTheAggregateByTheServerLearningRate(string rule)
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await using var dev1 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-1", "lr");
        var federation = cloud.Grains.GetGrain<IFederationGrain>("lr");
        var config = new FederationConfig
        {
            Model = "logreg",
            Codec = "fp32",
            Rule = rule,
            Rounds = 1,
            Mode = FederationMode.Sync,
            ServerLearningRate = 0.25,
            RoundDeadline = TimeSpan.FromMinutes(1),
        };
        var started = await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()));
        var d = started.ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;

        await dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Enumerable.Repeat(2f, d).ToArray(), 0));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "round 1 to close");
        var v1 = (await federation.GetModelAsync())!;
        for (var i = 0; i < d; i++) Assert.Equal(v0[i] + 0.5f, v1.Parameters[i], 1e-5f);
    }

    [Fact]
    public async Task Ef21ServerEstimateAccumulatesAcrossRoundsAndRestarts()
    {
        using var data = new TempDirectory();
        var config = new FederationConfig
        {
            Model = "logreg",
            Codec = "fp32",
            Rule = "mean",
            Rounds = 0,
            Mode = FederationMode.Sync,
            ErrorFeedback = "ef21",
            RoundDeadline = TimeSpan.FromMinutes(5),
        };
        var credentials = new Dictionary<string, (string Password, byte[] Key)>();
        float[] v0;
        int d;

        async Task RoundAsync(CloudTestHost cloud, long version, float c1, float c2)
        {
            var federation = cloud.Grains.GetGrain<IFederationGrain>("fe");
            await using var dev1 = await TestDevice.ConnectAsync(cloud, "dev-1", "fe", credentials["dev-1"].Password, credentials["dev-1"].Key);
            await using var dev2 = await TestDevice.ConnectAsync(cloud, "dev-2", "fe", credentials["dev-2"].Password, credentials["dev-2"].Key);
            await dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Enumerable.Repeat(c1, d).ToArray(), version));
            await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Enumerable.Repeat(c2, d).ToArray(), version));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == version + 1, $"v{version + 1}");
        }

        async Task<float> OffsetAsync(CloudTestHost cloud) => (await cloud.Grains.GetGrain<IFederationGrain>("fe").GetModelAsync())!.Parameters[0] - v0[0];

        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            foreach (var id in new[] { "dev-1", "dev-2" })
            {
                var (_, password, key) = cloud.Registry.Add(id, "fe");
                credentials[id] = (password, key);
            }
            var federation = cloud.Grains.GetGrain<IFederationGrain>("fe");
            d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
            v0 = (await federation.GetModelAsync())!.Parameters;
            await RoundAsync(cloud, 0, 1, 3); // g = 2, x = x0 + 2
            Assert.Equal(2f, await OffsetAsync(cloud), 1e-5f);
            await RoundAsync(cloud, 1, 1, 1); // g = 3, x = x0 + 5
            Assert.Equal(5f, await OffsetAsync(cloud), 1e-5f);
        }
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await RoundAsync(cloud, 2, 0, 0); // g stays 3 (restored), x = x0 + 8
            Assert.Equal(8f, await OffsetAsync(cloud), 1e-5f);
        }
    }

    [Fact]
    public async Task StatusAndLastWillDriveLiveness()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var (_, password, _) = cloud.Registry.Add("dev-1", "fl");
        cloud.Registry.Add("dev-2", "fl");
        var federation = cloud.Grains.GetGrain<IFederationGrain>("fl");
        var config = new FederationConfig { Model = "logreg", Codec = "fp32", Rule = "mean", Rounds = 0, RoundDeadline = TimeSpan.FromMinutes(5) };
        var started = await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()));
        Assert.Equal(2, started.Sampled.Count); // nobody live yet: every registered device is sampled

        var (client, result) = await cloud.ConnectAsync("dev-1", "dev-1", password, b => b
            .WithWillTopic(FedEdge.Protocol.MqttTopics.Status("fl", "dev-1"))
            .WithWillPayload(FedEdge.Protocol.DeviceStatuses.LastWill("fl", "dev-1"))
            .WithWillRetain());
        Assert.Equal(MQTTnet.MqttClientConnectResultCode.Success, result!.ResultCode);
        await client.PublishAsync(new MQTTnet.MqttApplicationMessageBuilder().WithTopic(FedEdge.Protocol.MqttTopics.Status("fl", "dev-1"))
            .WithPayload(FedEdge.Protocol.DeviceStatuses.Create("fl", "dev-1", FedEdge.Protocol.Messages.DeviceState.Online).ToByteArray())
            .WithRetainFlag().WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).LiveDevices == 1, "dev-1 to be live");
        var stats = await cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync();
        Assert.True(stats.Online);
        Assert.NotNull(stats.LastSeen);

        client.Dispose(); // vanishes without DISCONNECT: the broker publishes the OFFLINE last will
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).LiveDevices == 0, "the last will to mark dev-1 gone");
        Assert.False((await cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Online);
    }
}
