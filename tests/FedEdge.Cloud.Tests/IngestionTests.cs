using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

[Collection(ServerCollection.Name)]
public sealed class IngestionTests
{
    private static readonly FederationConfig Config = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.Sync,
        RoundDeadline = TimeSpan.FromMinutes(5),
    };

    [Fact]
    public async Task EachRejectionReasonIsCounted_AndOnlyAcceptedUpdatesReachTheModel()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path, o => o.MaxUpdateBytes = 4096);
        await using var dev1 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-1", "f1");
        await using var dev2 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-2", "f1");
        var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
        var started = await federation.StartAsync(Config, new Immutable<byte[]>(TestModels.Logreg()));
        Assert.Equal(["dev-1", "dev-2"], started.Sampled.Order());
        var d = started.ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;
        await using var revoked = await TestDevice.RegisterAndConnectAsync(cloud, "dev-r", "f1");
        var service = cloud.Services.GetRequiredService<ServiceIdentity>();
        var (serviceClient, _) = await cloud.ConnectAsync("test-service", service.UserName, service.Password);
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();

        async Task Expect(RejectionReason reason, Func<Task> send)
        {
            var before = metrics.Rejected(reason);
            await send();
            await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(reason) == before + 1), $"a {reason} rejection");
        }

        float[] Delta(float value) => Enumerable.Repeat(value, d).ToArray();

        await Expect(RejectionReason.Malformed, () => TestDevice.PublishFrameAsync(dev1.Client, MqttTopics.Update("f1", "dev-1"), [0x0A, 0xFF, 1, 2, 3]));
        using (var forger = SigningKeyPair.Generate("dev-1"))
            await Expect(RejectionReason.BadSignature, () => dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(100), 0, signer: forger)));
        await Expect(RejectionReason.WrongDevice, () => dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(100), 0), via: serviceClient, topicDevice: "dev-2"));
        await Expect(RejectionReason.UnknownDevice, () => dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(100), 0), via: serviceClient, topicDevice: "ghost"));
        Assert.True(cloud.Registry.Revoke("dev-r"));
        await Expect(RejectionReason.RevokedDevice, () => revoked.PublishEnvelopeAsync(revoked.SignedUpdate(Delta(100), 0)));
        await Expect(RejectionReason.Oversized, () => TestDevice.PublishFrameAsync(dev1.Client, MqttTopics.Update("f1", "dev-1"), new byte[5000]));
        await Expect(RejectionReason.NonFinite, () => dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(1), 0,
            tamperPayload: p => BitConverter.GetBytes(float.NaN).CopyTo(p, p.Length - 4))));
        await Expect(RejectionReason.UnknownBaseVersion, () => dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(100), 7)));

        var good1 = dev1.SignedUpdate(Delta(1), 0, samples: 10);
        await dev1.PublishEnvelopeAsync(good1);
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted == 1), "the first accepted update");
        await Expect(RejectionReason.Replay, () => dev1.PublishEnvelopeAsync(good1));
        Assert.Equal(1, (await federation.GetStatusAsync()).PendingUpdates);

        await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Delta(3), 0, samples: 30));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "round 1 to complete");
        await Expect(RejectionReason.TooStale, () => dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Delta(100), 0)));

        // v1 = v0 + sample-weighted mean of the two accepted updates: (10·1 + 30·3)/40 = 2.5.
        var v1 = (await federation.GetModelAsync())!;
        Assert.Equal(1, v1.Version);
        for (var i = 0; i < d; i++) Assert.Equal(v0[i] + 2.5f, v1.Parameters[i], 1e-5f);

        var stats = await cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync();
        Assert.Equal(1, stats.Accepted);
        Assert.Equal(1, stats.Rejected[RejectionReason.Replay]);
        Assert.Equal(1, stats.Rejected[RejectionReason.BadSignature]);
        Assert.Equal(1, stats.Rejected[RejectionReason.TooStale]);
        Assert.False(stats.Rejected.ContainsKey(RejectionReason.UnknownDevice));
        Assert.Equal(1, (await cloud.Grains.GetGrain<IDeviceGrain>("dev-r").GetStatisticsAsync()).Rejected[RejectionReason.RevokedDevice]);
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted == 2), "both accepted updates counted");
        serviceClient.Dispose();
    }

    [Fact]
    public async Task AClaimedSampleCountAboveTheFederationsMaximumIsRejected_AndCannotDominateTheMean()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await using var honest = await TestDevice.RegisterAndConnectAsync(cloud, "dev-1", "f1");
        await using var liar = await TestDevice.RegisterAndConnectAsync(cloud, "dev-2", "f1");
        var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
        var d = (await federation.StartAsync(Config with { MaxSampleCount = 1000 }, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();

        await liar.PublishEnvelopeAsync(liar.SignedUpdate(Enumerable.Repeat(100f, d).ToArray(), 0, samples: 1_000_000_000));
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.SampleCountOutOfRange) == 1), "the inflated weight to be rejected");
        Assert.Equal(0, (await federation.GetStatusAsync()).PendingUpdates);
        Assert.Equal(1, (await federation.GetStatusAsync()).RejectedTotal[RejectionReason.SampleCountOutOfRange]);
        Assert.Equal(1, (await cloud.Grains.GetGrain<IDeviceGrain>("dev-2").GetStatisticsAsync()).Rejected[RejectionReason.SampleCountOutOfRange]);

        // At the bound the weight counts as claimed: v1 = v0 + (1000·1 + 10·(−2))/1010.
        await liar.PublishEnvelopeAsync(liar.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0, samples: 1000));
        await honest.PublishEnvelopeAsync(honest.SignedUpdate(Enumerable.Repeat(-2f, d).ToArray(), 0, samples: 10));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "the round to complete");
        var v1 = (await federation.GetModelAsync())!.Parameters;
        for (var i = 0; i < d; i++) Assert.Equal(v0[i] + (1000f - 20f) / 1010f, v1[i], 1e-5f);
        Assert.Equal("MaxSampleCount must be ≥ 1 (got 0)", (Config with { MaxSampleCount = 0 }).Validate());
    }

    [Fact]
    public Task AcceptedUpdatesSurviveARestart_AndAreNotCountedTwice_Sqlite() => RestartScenarioAsync(_ => { });

    [Fact]
    public async Task AcceptedUpdatesSurviveARestart_AndAreNotCountedTwice_Redis()
    {

        using var redisData = new TempDirectory();
        using var redis = await RedisServer.StartAsync(redisData.Path);
        await RestartScenarioAsync(o =>
        {
            o.Storage = StateStorageKind.Redis;
            o.RedisConnectionString = redis.ConnectionString;
        });
    }

    /// <summary>Start, accept two of three updates, stop; start again: the two are still pending, a resent one is a replay.</summary>
    private static async Task RestartScenarioAsync(Action<CloudOptions> storage)
    {
        using var data = new TempDirectory();
        byte[] replayed;
        string password3;
        byte[] key3;
        float[] v0;
        int d;
        await using (var cloud = await CloudTestHost.StartAsync(data.Path, storage))
        {
            await using var dev1 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-1", "f1");
            await using var dev2 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-2", "f1");
            (_, password3, key3) = cloud.Registry.Add("dev-3", "f1");
            var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
            d = (await federation.StartAsync(Config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
            v0 = (await federation.GetModelAsync())!.Parameters;
            replayed = dev1.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0);
            await dev1.PublishEnvelopeAsync(replayed);
            await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Enumerable.Repeat(2f, d).ToArray(), 0));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 2, "two pending updates");
            var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
            await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted == 2), "both devices to record their accepted update");
        }

        await using (var cloud = await CloudTestHost.StartAsync(data.Path, storage))
        {
            var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
            var status = await federation.GetStatusAsync();
            Assert.Equal(2, status.PendingUpdates);
            Assert.Equal(2, status.AcceptedTotal);
            Assert.Equal(0, status.ModelVersion);
            Assert.Equal(1, (await cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Accepted);

            // dev-1's outbox resends after the restart (sent here through the service identity, as the test
            // does not keep dev-1's password): a replay, not a second contribution.
            var service = cloud.Services.GetRequiredService<ServiceIdentity>();
            var (serviceClient, _) = await cloud.ConnectAsync("test-service", service.UserName, service.Password);
            await TestDevice.PublishFrameAsync(serviceClient, MqttTopics.Update("f1", "dev-1"), TestDevice.WholeFrame(replayed));
            var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
            await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.Replay) == 1), "the replay to be rejected");

            await using var dev3 = await TestDevice.ConnectAsync(cloud, "dev-3", "f1", password3, key3);
            await dev3.PublishEnvelopeAsync(dev3.SignedUpdate(Enumerable.Repeat(6f, d).ToArray(), 0));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "the round to complete after the restart");
            var v1 = (await federation.GetModelAsync())!;
            for (var i = 0; i < d; i++) Assert.Equal(v0[i] + 3f, v1.Parameters[i], 1e-5f); // mean of 1, 2, 6
            Assert.Equal(3, (await federation.GetStatusAsync()).AcceptedTotal);
            Assert.Equal(1, (await cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Accepted);
            serviceClient.Dispose();
        }
    }
}
