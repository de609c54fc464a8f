using FedEdge.Aggregation.SignedDirections;
using FedEdge.Aggregation.Strategies;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Aggregation;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Models;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// FedMM (surrogate statistics, algorithms.md §5) and FAR-SIGN (signed directional derivatives, §4) through the
/// federation grain over the embedded broker: a cloud restart in the middle of a version loses no accepted answer and
/// applies none twice (the results equal the library's on the same answers in one process), and statistics or answers
/// of the wrong shape or not finite are refused with their reason.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class SurrogateAndSignFederationTests
{
    private const string Federation = "fs";
    private const int Devices = 3;
    private const int Directions = 16;

    private static readonly FederationConfig FedMM = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.Sync,
        RoundDeadline = TimeSpan.FromMinutes(10),
        Algorithm = "fedmm:surrogate=quadratic,l=4,l1=0.05,alpha=0.5,gamma=0.8",
    };

    private static readonly FederationConfig FarSign = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.FedAsync,
        Seed = 7,
        Algorithm = $"far-sign:directions={Directions},alpha=0.5,beta=0.5,k0=1",
    };

    [Fact]
    public async Task FedMMKeepsEveryStatisticThroughARestartMidVersion()
    {
        using var data = new TempDirectory();
        var d = ModelZoo().ParameterCount;
        // v1 is the bootstrap (each device sends S_i); v2 takes Q(Δ_i) = S_i − Ŝ − V_i. The restart comes after two of
        // the three v2 statistics were accepted.
        float[][][] versions = [[Vector(d, 1), Vector(d, 2), Vector(d, 4)], [Vector(d, 0.5f), Vector(d, -0.25f), Vector(d, 1)]];
        var (v0, v2) = await RunWithRestartAsync(data.Path, FedMM, d, versions, restartAfter: 2);
        var expected = Oracle(FedMM, v0, versions);
        for (var j = 0; j < d; j++) Assert.Equal(expected[j], v2[j], 1e-5f);
        // Ŝ and V moved: the second version is not the map of its own statistics alone.
        var forgetful = Oracle(FedMM, v0, versions[1]);
        Assert.True(expected.Zip(forgetful, (a, b) => Math.Abs(a - b)).Max() > 1e-3, "v2 depends on the Ŝ and V that v1 left");
    }

    [Fact]
    public async Task FarSignAppliesEveryAnswerOnceThroughARestart()
    {
        using var data = new TempDirectory();
        var d = ModelZoo().ParameterCount;
        // Each message is a version: answers of three devices on v0, v1, v2 (a stale base is fine), restart after two.
        float[][][] messages = [[Answers(1)], [Answers(2)], [Answers(3)]];
        await using var fleet = new TestFleet(Federation, Devices);
        float[] v0;
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await fleet.ConnectAsync(cloud);
            var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
            await federation.StartAsync(FarSign, new Immutable<byte[]>(TestModels.Logreg()));
            v0 = (await federation.GetModelAsync())!.Parameters;
            await SendAndWaitAsync(cloud, fleet.Devices[0], messages[0][0], baseVersion: 0, expectVersion: 1);
            await SendAndWaitAsync(cloud, fleet.Devices[1], messages[1][0], baseVersion: 0, expectVersion: 2);
        }
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await fleet.ConnectAsync(cloud);
            var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
            var replay = fleet.Devices[0].SignedUpdate(messages[0][0], 0);
            await fleet.Devices[0].PublishEnvelopeAsync(replay); // a new update id for the same base: one answer per device and base
            await WaitForRejectionAsync(federation, RejectionReason.NotAccepting);
            var v3 = await SendAndWaitAsync(cloud, fleet.Devices[2], messages[2][0], baseVersion: 1, expectVersion: 3);

            var strategy = FederationStrategyFactory.Create(FarSign, d);
            var model = v0.ToArray();
            long[] bases = [0, 0, 1];
            for (var m = 0; m < 3; m++)
            {
                var version = strategy.Begin(strategy.Plan(new VersionContext(m, DateTimeOffset.UnixEpoch, Devices) { Model = model }, [])!);
                Assert.Null(version.Offer(DeviceContribution.SignAnswers($"dev-{m}", SignAnswerPacket.FromSigns(messages[m][0]), bases[m])));
                version.Complete(model);
            }
            for (var j = 0; j < d; j++) Assert.Equal(model[j], v3[j], 1e-5f);
            Assert.True(v3.Zip(v0, (a, b) => Math.Abs(a - b)).Max() > 1e-4, "the answers moved the model");
            Assert.Equal(3, ((FarSignStrategy)strategy).AnswersApplied / Directions);
        }
    }

    [Fact]
    public async Task MalformedStatisticsAndAnswersAreRefusedWithTheirReason()
    {
        using var data = new TempDirectory();
        var d = ModelZoo().ParameterCount;
        await using var fleet = new TestFleet(Federation, 1);
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await fleet.ConnectAsync(cloud);
        var fedmm = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        await fedmm.StartAsync(FedMM, new Immutable<byte[]>(TestModels.Logreg()));
        var device = fleet.Devices[0];
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        async Task Expect(RejectionReason reason, float[] statistic, Action<byte[]>? tamper = null)
        {
            var before = metrics.Rejected(reason);
            await device.PublishEnvelopeAsync(device.SignedUpdate(statistic, 0, tamperPayload: tamper));
            await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(reason) == before + 1), $"a {reason} rejection");
        }

        // A statistic of the model's length + 1 coordinates (the quadratic surrogate's has d), then one that is not finite.
        await Expect(RejectionReason.Oversized, Vector(d + 1, 1));
        await Expect(RejectionReason.NonFinite, Vector(d, 1), p => BitConverter.GetBytes(float.NaN).CopyTo(p, p.Length - 4));
        Assert.Equal(0, (await fedmm.GetStatusAsync()).PendingUpdates);
        Assert.Equal(d, (await fedmm.GetStatusAsync()).ContributionLength);
    }

    [Fact]
    public void AnAlgorithmThatCannotRunIsRefusedWithItsReason()
    {
        var d = ModelZoo().ParameterCount;
        Assert.Contains("l= (the smoothness", FederationStrategyFactory.Validate(FedMM with { Algorithm = "fedmm:surrogate=quadratic" }, d));
        Assert.Contains("synchronous rounds", FederationStrategyFactory.Validate(FedMM with { Mode = FederationMode.FedBuff }, d));
        Assert.Contains("linear model", FederationStrategyFactory.Validate(FedMM with { Algorithm = "fedmm:surrogate=logistic" }, d + 1, new ModelShape(4, 2)));
        Assert.Null(FederationStrategyFactory.Validate(FedMM with { Algorithm = "fedmm:surrogate=logistic" }, d, new ModelShape(4, 2)));
        Assert.Contains("fully asynchronous", FederationStrategyFactory.Validate(FarSign with { Mode = FederationMode.Sync }, d));
        Assert.Contains("unknown key", FederationStrategyFactory.Validate(FedMM with { Algorithm = "fedmm:surrogate=quadratic,l=4,bogus=1" }, d));
        Assert.Contains("'sgd'", FederationStrategyFactory.Validate(FedMM with { Algorithm = "sgd" }, d));
    }

    private static OnnxParameterVector ModelZoo() => new(TestModels.Logreg());

    private static float[] Vector(int length, float scale) =>
        [.. Enumerable.Range(0, length).Select(j => scale * (1 + (0.1f * (j % 5)) - (0.3f * (j % 2))))];

    private static float[] Answers(int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, Directions).Select(_ => random.Next(2) == 0 ? -1f : 1f)];
    }

    /// <summary>Sends each version's statistics from the fleet; the cloud restarts once <paramref name="restartAfter"/> of
    /// the last version's were accepted. Returns v0 and the last version's model.</summary>
    private static async Task<(float[] V0, float[] Last)> RunWithRestartAsync(string dataPath, FederationConfig config, int d, float[][][] versions, int restartAfter)
    {
        await using var fleet = new TestFleet(Federation, Devices);
        float[] v0;
        var last = versions.Length - 1;
        await using (var cloud = await CloudTestHost.StartAsync(dataPath))
        {
            await fleet.ConnectAsync(cloud);
            var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
            await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()));
            v0 = (await federation.GetModelAsync())!.Parameters;
            for (var v = 0; v < last; v++)
            {
                for (var i = 0; i < Devices; i++) await fleet.Devices[i].PublishEnvelopeAsync(fleet.Devices[i].SignedUpdate(versions[v][i], v));
                await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == v + 1, $"v{v + 1}");
            }
            for (var i = 0; i < restartAfter; i++) await fleet.Devices[i].PublishEnvelopeAsync(fleet.Devices[i].SignedUpdate(versions[last][i], last));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == restartAfter, $"{restartAfter} pending statistics");
        }
        await using (var cloud = await CloudTestHost.StartAsync(dataPath))
        {
            await fleet.ConnectAsync(cloud);
            var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
            Assert.Equal(restartAfter, (await federation.GetStatusAsync()).PendingUpdates);
            for (var i = restartAfter; i < Devices; i++) await fleet.Devices[i].PublishEnvelopeAsync(fleet.Devices[i].SignedUpdate(versions[last][i], last));
            await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == last + 1, $"v{last + 1}");
            return (v0, (await federation.GetModelAsync())!.Parameters);
        }
    }

    /// <summary>The same versions through the library alone (one process, no restart).</summary>
    private static float[] Oracle(FederationConfig config, float[] v0, params float[][][] versions)
    {
        var strategy = FederationStrategyFactory.Create(config, v0.Length);
        var model = v0.ToArray();
        var devices = Enumerable.Range(0, Devices).Select(i => new DeviceDescriptor($"dev-{i}")).ToArray();
        for (var v = 0; v < versions.Length; v++)
        {
            var version = strategy.Begin(strategy.Plan(new VersionContext(v, DateTimeOffset.UnixEpoch, Devices) { Model = model }, devices)!);
            for (var i = 0; i < Devices; i++)
                Assert.Null(version.Offer(DeviceContribution.Update($"dev-{i}", versions[v][i], 10, v)));
            version.Complete(model);
        }
        return model;
    }

    private static async Task<float[]> SendAndWaitAsync(CloudTestHost cloud, TestDevice device, float[] answers, long baseVersion, long expectVersion)
    {
        var federation = cloud.Grains.GetGrain<IFederationGrain>(Federation);
        await device.PublishEnvelopeAsync(device.SignedUpdate(answers, baseVersion));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == expectVersion, $"v{expectVersion}");
        return (await federation.GetModelAsync())!.Parameters;
    }

    private static Task WaitForRejectionAsync(IFederationGrain federation, RejectionReason reason) =>
        Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).RejectedTotal.GetValueOrDefault(reason) > 0, $"a {reason} rejection");
}
