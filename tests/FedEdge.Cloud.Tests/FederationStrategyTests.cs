using FedEdge.Aggregation;
using FedEdge.Aggregation.Strategies;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Aggregation;
using FedEdge.Cloud.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// Every rule and mode through the federation grain, over the embedded broker: what the configuration names is what
/// runs; the strategies' server state (clipping centre, FedOpt moments, Byz-EF21 estimates) survives a restart of the
/// cloud between versions; deadlines follow the injected clock.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class FederationStrategyTests
{
    private const string Federation = "fs";

    private static FederationConfig Config(string rule, FederationMode mode, int devices) => new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = rule,
        Rounds = 0,
        Mode = mode,
        BufferSize = devices,
        ByzantineCount = 1,
        RoundDeadline = TimeSpan.FromMinutes(10),
    };

    /// <summary>Each device i sends <paramref name="updates"/>[i]·1 (every coordinate) on <paramref name="baseVersion"/>; waits for the next version.</summary>
    private static async Task<float[]> RunVersionAsync(CloudTestHost cloud, TestFleet fleet, long baseVersion, int d, params float[] updates)
    {
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        for (var i = 0; i < updates.Length; i++)
            await fleet.Devices[i].PublishEnvelopeAsync(fleet.Devices[i].SignedUpdate(Enumerable.Repeat(updates[i], d).ToArray(), baseVersion));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == baseVersion + 1, $"v{baseVersion + 1}");
        return (await federation.GetModelAsync())!.Parameters;
    }

    /// <summary>The same versions through the library alone (one process, no restart): the oracle of the grain's results.</summary>
    private static float[] Oracle(FederationConfig config, float[] v0, params float[][] versions)
    {
        var strategy = FederationStrategyFactory.Create(config, v0.Length);
        var model = v0.ToArray();
        for (var v = 0; v < versions.Length; v++)
        {
            var devices = Enumerable.Range(0, versions[v].Length).Select(i => new DeviceDescriptor($"dev-{i}")).ToArray();
            var version = strategy.Begin(strategy.Plan(new VersionContext(v, DateTimeOffset.UnixEpoch, devices.Length) { Model = model }, devices)!);
            for (var i = 0; i < versions[v].Length; i++)
                Assert.Null(version.Offer(DeviceContribution.Update($"dev-{i}", Enumerable.Repeat(versions[v][i], v0.Length).ToArray(), 10, v)));
            version.Complete(model);
        }
        return model;
    }

    /// <summary>Four honest devices send 1, one sends 1000: every robust rule keeps the step near 1, the mean moves ≈ 200.</summary>
    [Theory]
    [InlineData("mean", FederationMode.Sync)]
    [InlineData("median", FederationMode.Sync)]
    [InlineData("trimmed-mean", FederationMode.Sync)]
    [InlineData("krum", FederationMode.Sync)]
    [InlineData("multi-krum", FederationMode.Sync)]
    [InlineData("geomed", FederationMode.Sync)]
    [InlineData("centered-clip", FederationMode.Sync)]
    [InlineData("nnm+trimmed-mean", FederationMode.Sync)]
    [InlineData("sign-vote", FederationMode.Sync)]
    [InlineData("mean", FederationMode.FedBuff)]
    [InlineData("median", FederationMode.FedBuff)]
    [InlineData("trimmed-mean", FederationMode.FedBuff)]
    [InlineData("krum", FederationMode.FedBuff)]
    [InlineData("geomed", FederationMode.FedBuff)]
    [InlineData("centered-clip", FederationMode.FedBuff)]
    [InlineData("nnm+median", FederationMode.FedBuff)]
    public async Task EveryRuleRunsThroughTheGrain(string rule, FederationMode mode)
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await using var fleet = new TestFleet(Federation, 5);
        await fleet.ConnectAsync(cloud);
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        var config = Config(rule, mode, 5);
        var started = await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()));
        Assert.Contains(rule, started.Strategy);
        Assert.StartsWith(mode == FederationMode.Sync ? "sync" : "fedbuff", started.Strategy);
        Assert.Equal(rule == "mean", started.AddsEncodedUpdates); // a streaming mean adds payloads without decoding
        var v0 = (await federation.GetModelAsync())!.Parameters;

        var v1 = await RunVersionAsync(cloud, fleet, 0, v0.Length, 1, 1, 1, 1, 1000);

        var step = v1.Zip(v0, (a, b) => a - b).Max(Math.Abs);
        if (rule == "mean") Assert.InRange(step, 150, 250);
        else Assert.InRange(step, 0.5, 5);
        Assert.Equal(Oracle(config, v0, [1, 1, 1, 1, 1000]), v1);
    }

    /// <summary>A Gaussian attacker (N(0, 200²) per coordinate) in every FedBuff buffer: the trimmed mean keeps learning the honest direction.</summary>
    [Fact]
    public async Task RobustFedBuffRejectsAGaussianAttackersInfluence()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await using var fleet = new TestFleet(Federation, 5);
        await fleet.ConnectAsync(cloud);
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        // The rule alone: the norm bound would refuse the attacker's updates (norm ≈ 2,000× the honest ones) before it.
        var config = Config("trimmed-mean", FederationMode.FedBuff, 5) with { MaxNormToMedian = 0 };
        var d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;
        var random = new Random(7);
        for (var v = 0; v < 3; v++)
        {
            for (var i = 0; i < 4; i++) await fleet.Devices[i].PublishEnvelopeAsync(fleet.Devices[i].SignedUpdate(Enumerable.Repeat(0.1f, d).ToArray(), v));
            var gaussian = Enumerable.Range(0, d).Select(_ => (float)(200 * NormalSample(random))).ToArray();
            await fleet.Devices[4].PublishEnvelopeAsync(fleet.Devices[4].SignedUpdate(gaussian, v));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == v + 1, $"v{v + 1}");
        }
        var v3 = (await federation.GetModelAsync())!.Parameters;
        for (var j = 0; j < d; j++) Assert.InRange(v3[j] - v0[j], 0.29, 0.31); // three honest steps of 0.1, nothing of the attacker
    }

    private static double NormalSample(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    /// <summary>
    /// The stateful server parts, restarted between versions: the grain's two versions equal the library's
    /// uninterrupted run, and differ from a run that forgot the state.
    /// </summary>
    [Theory]
    [InlineData("centered-clip", "none", "none", "messages")]
    [InlineData("mean", "fedadam", "none", "messages")]
    [InlineData("mean", "fedavgm", "none", "messages")]
    [InlineData("median", "none", "ef21", "messages")]
    [InlineData("median", "none", "ef21", "estimates")]
    public async Task ServerStateSurvivesARestartBetweenVersions(string rule, string optimizer, string errorFeedback, string estimates)
    {
        using var data = new TempDirectory();
        var config = Config(rule, FederationMode.Sync, 3) with
        {
            ServerOptimizer = optimizer,
            ServerLearningRate = optimizer == "fedadam" ? 0.1 : 1.0,
            ErrorFeedback = errorFeedback,
            EstimateAggregation = estimates,
            ByzantineCount = 0,
            RuleParameters = new Dictionary<string, string> { ["tau"] = "1", ["iters"] = "1" },
        };
        float[][] versions = [[0.5f, 0.6f, 10f], [0.2f, 0.3f, 10f]];
        await using var fleet = new TestFleet(Federation, 3);
        float[] v0;
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await fleet.ConnectAsync(cloud);
            var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
            await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()));
            v0 = (await federation.GetModelAsync())!.Parameters;
            await RunVersionAsync(cloud, fleet, 0, v0.Length, versions[0]);
        }
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await fleet.ConnectAsync(cloud);
            var v2 = await RunVersionAsync(cloud, fleet, 1, v0.Length, versions[1]);
            var expected = Oracle(config, v0, versions);
            for (var j = 0; j < v2.Length; j++) Assert.Equal(expected[j], v2[j], 1e-5f);
            var forgetful = Oracle(config, Oracle(config, v0, versions[0]), versions[1]);
            Assert.True(expected.Zip(forgetful, (a, b) => Math.Abs(a - b)).Max() > 1e-3, "the second version depends on the state the first left");
        }
    }

    /// <summary>A sync round closes at its deadline on the injected clock, with the update that arrived.</summary>
    [Fact]
    public async Task SyncRoundClosesAtItsDeadlineOnTheInjectedClock()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path, configureHost: b => b.Services.AddSingleton(new CloudClock(clock)));
        await using var fleet = new TestFleet(Federation, 2);
        await fleet.ConnectAsync(cloud);
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        var started = await federation.StartAsync(Config("mean", FederationMode.Sync, 2) with { RoundDeadline = TimeSpan.FromMinutes(1) }, new Immutable<byte[]>(TestModels.Logreg()));
        Assert.Equal(clock.GetUtcNow() + TimeSpan.FromMinutes(1), started.RoundDeadline);
        var d = started.ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;

        await fleet.Devices[0].PublishEnvelopeAsync(fleet.Devices[0].SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 1, "dev-0's update");
        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.False(await federation.CheckDeadlineAsync());
        Assert.Equal(0, (await federation.GetStatusAsync()).ModelVersion);
        clock.Advance(TimeSpan.FromSeconds(1));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "the deadline to close round 1");
        var v1 = (await federation.GetModelAsync())!.Parameters;
        for (var j = 0; j < d; j++) Assert.Equal(v0[j] + 1f, v1[j], 1e-5f);
    }

    /// <summary>FedFix aggregates every Δt what returned, weighting ⌈τ_i/Δt⌉/n; an empty period waits one more.</summary>
    [Fact]
    public async Task FedFixAggregatesEveryPeriodOnTheInjectedClock()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path, configureHost: b => b.Services.AddSingleton(new CloudClock(clock)));
        await using var fleet = new TestFleet(Federation, 4);
        await fleet.ConnectAsync(cloud);
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        var config = Config("mean", FederationMode.FedFix, 4) with { AggregationPeriod = TimeSpan.FromSeconds(10) };
        var d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;

        clock.Advance(TimeSpan.FromSeconds(5));
        await fleet.Devices[0].PublishEnvelopeAsync(fleet.Devices[0].SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0));
        await fleet.Devices[1].PublishEnvelopeAsync(fleet.Devices[1].SignedUpdate(Enumerable.Repeat(2f, d).ToArray(), 0));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 2, "two updates");
        clock.Advance(TimeSpan.FromSeconds(5));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "the period's end");
        var v1 = (await federation.GetModelAsync())!.Parameters;
        for (var j = 0; j < d; j++) Assert.Equal(v0[j] + (1f + 2f) / 4, v1[j], 1e-5f); // both back within a period: d_i = 1/n

        // dev-2 trained from v0 for 25 s (3 periods): it weighs 3/n in v2.
        clock.Advance(TimeSpan.FromSeconds(15));
        await fleet.Devices[2].PublishEnvelopeAsync(fleet.Devices[2].SignedUpdate(Enumerable.Repeat(4f, d).ToArray(), 0));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 1, "dev-2's update");
        clock.Advance(TimeSpan.FromSeconds(5));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 2, "the second period's end");
        var v2 = (await federation.GetModelAsync())!.Parameters;
        for (var j = 0; j < d; j++) Assert.Equal(v1[j] + 3 * 4f / 4, v2[j], 1e-5f);
    }

    /// <summary>FedAsync: every update is a version; a stale one mixes towards x_τ + Δ with α·(τ + 1)^(−½).</summary>
    [Fact]
    public async Task FedAsyncMixesEachUpdateIntoItsOwnVersion()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await using var fleet = new TestFleet(Federation, 2);
        await fleet.ConnectAsync(cloud);
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        var config = Config("mean", FederationMode.FedAsync, 2) with { MixingRate = 0.5 };
        var d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;

        var v1 = await RunVersionAsync(cloud, fleet, 0, d, 2f); // x1 = x0 + ½·2
        await fleet.Devices[1].PublishEnvelopeAsync(fleet.Devices[1].SignedUpdate(Enumerable.Repeat(4f, d).ToArray(), 0));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 2, "v2");
        var v2 = (await federation.GetModelAsync())!.Parameters;
        var alpha = 0.5f / MathF.Sqrt(2); // τ = 1
        for (var j = 0; j < d; j++)
        {
            Assert.Equal(v0[j] + 1f, v1[j], 1e-5f);
            Assert.Equal((1 - alpha) * v1[j] + alpha * (v0[j] + 4f), v2[j], 1e-5f);
        }
    }

    [Fact]
    public async Task AConfigurationThatCannotRunIsRefusedWithItsReason()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        var robustFedAsync = await Assert.ThrowsAsync<ArgumentException>(() =>
            federation.StartAsync(Config("trimmed-mean", FederationMode.FedAsync, 2), new Immutable<byte[]>(TestModels.Logreg())));
        Assert.Contains("FedBuff", robustFedAsync.Message);
        var unknownOptimizer = await Assert.ThrowsAsync<ArgumentException>(() =>
            federation.StartAsync(Config("mean", FederationMode.Sync, 2) with { ServerOptimizer = "adamw" }, new Immutable<byte[]>(TestModels.Logreg())));
        Assert.Contains("adamw", unknownOptimizer.Message);
        Assert.Equal(FederationPhase.NotStarted, (await federation.GetStatusAsync()).Phase);
    }
}
