using FedEdge.Aggregation.Asynchronous;
using FedEdge.Aggregation.Strategies;

namespace FedEdge.Aggregation.Tests;

/// <summary>Whole versions through the strategy seam: one test per mode's worked example, and the server state across a restart.</summary>
public class StrategyTests
{
    private static readonly DeviceDescriptor[] Fleet =
        Enumerable.Range(0, 10).Select(i => new DeviceDescriptor($"dev-{i}", 100)).ToArray();

    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    private static ServerAggregator Server(string rule = "mean", int f = 0, int d = 1, string optimizer = "none",
        double eta = 1.0, ServerEstimate estimate = ServerEstimate.None, ServerState? state = null) =>
        new(new ServerAggregatorOptions
        {
            Rule = rule,
            Parameters = new RuleParameters { F = f, Tau = 1.0, Iterations = 1 },
            ServerOptimizer = optimizer,
            ServerLearningRate = eta,
            Estimate = estimate,
        }, d, state);

    private static VersionContext Context(long version = 0, int fleet = 10, float[]? model = null) =>
        new(version, T0, fleet) { Model = model ?? [] };

    [Fact]
    public void SyncSamplesAFractionDeterministically()
    {
        var strategy = new SyncRoundStrategy(new SyncRoundOptions { SampleFraction = 0.3, Seed = 5 }, Server());
        var plan = strategy.Plan(Context(7), Fleet)!;
        Assert.Equal(8, plan.Version);
        Assert.Equal(3, plan.Participants!.Distinct().Count());
        Assert.Equal(3, plan.Quorum);
        Assert.Equal(T0 + TimeSpan.FromMinutes(2), plan.Deadline);
        Assert.Equal(plan.Participants, strategy.Plan(Context(7), Fleet.Reverse().ToArray())!.Participants);
        Assert.NotEqual(plan.Participants, strategy.Plan(Context(8), Fleet)!.Participants);
        Assert.Null(strategy.Plan(Context(7), []));
    }

    [Fact]
    public void SyncRoundRefusesWithReasonsAndTakesTheSampleWeightedMean()
    {
        var strategy = new SyncRoundStrategy(new SyncRoundOptions(), Server(d: 2));
        var version = strategy.Begin(strategy.Plan(Context(1), Fleet[..3])!);
        Assert.Null(version.Offer(DeviceContribution.Update("dev-0", new float[] { 1, 2 }, 1, 1)));
        Assert.Contains("NaN", version.Offer(DeviceContribution.Update("dev-1", new float[] { float.NaN, 2 }, 1, 1))!.Reason);
        Assert.Contains("already answered", version.Offer(DeviceContribution.Update("dev-0", new float[] { 1, 2 }, 1, 1))!.Reason);
        Assert.Contains("not sampled", version.Offer(DeviceContribution.Update("dev-9", new float[] { 1, 2 }, 1, 1))!.Reason);
        Assert.Contains("coordinates", version.Offer(DeviceContribution.Update("dev-2", new float[] { 1 }, 1, 1))!.Reason);
        Assert.Equal(RefusalKind.TooStale, version.Offer(DeviceContribution.Update("dev-2", new float[] { 1, 1 }, 1, 0))!.Kind);
        Assert.False(version.IsReady);
        Assert.Null(version.Offer(DeviceContribution.Update("dev-2", new float[] { 3, 6 }, 3, 1)));
        Assert.False(version.IsReady); // dev-1 has not answered
        Assert.Equal(DeadlineDecision.Aggregate, version.AtDeadline());
        float[] model = [10, 10];
        var result = version.Complete(model);
        Assert.Equal([12.5f, 15f], model);
        Assert.Equal(2, result.Contributions);
    }

    [Fact]
    public void SyncRoundCountsDeclinesTowardsItsQuorumOnly()
    {
        var strategy = new SyncRoundStrategy(new SyncRoundOptions(), Server());
        Assert.True(strategy.CountsDeclines);
        var version = strategy.Begin(strategy.Plan(Context(0), Fleet[..2])!);
        Assert.Null(version.Offer(DeviceContribution.Decline("dev-0", 0)));
        Assert.False(version.IsReady); // a decline alone aggregates nothing
        Assert.Null(version.Offer(DeviceContribution.Update("dev-1", new float[] { 4 }, 1, 0)));
        Assert.True(version.IsReady);
        Assert.Equal(1, version.Declines);
    }

    [Fact]
    public void SyncKrumWithServerMomentumCarriesTheMomentumToTheNextVersion()
    {
        var strategy = new SyncRoundStrategy(new SyncRoundOptions(), Server("krum", f: 1, optimizer: "fedavgm"));
        float[] model = [0];
        for (int v = 0; v < 2; v++)
        {
            var version = strategy.Begin(strategy.Plan(Context(v), Fleet[..5])!);
            float[] values = [0, 1, 2, 3, 100];
            for (int i = 0; i < 5; i++)
            {
                Assert.Null(version.Offer(DeviceContribution.Update($"dev-{i}", new[] { values[i] }, 1, v)));
            }

            version.Complete(model);
        }

        // Krum picks 1 both times; FedAvgM (β = 0.9): x = 1, then 1 + 1.9.
        Assert.Equal([2.9f], model);
    }

    [Fact]
    public void SignVoteMovesAlongTheMajority()
    {
        var strategy = new SyncRoundStrategy(new SyncRoundOptions(), Server("sign-vote", d: 3, eta: 0.01));
        Assert.Equal(ContributionKind.PackedSigns, strategy.Contribution);
        var version = strategy.Begin(strategy.Plan(Context(0), Fleet[..3])!);
        version.Offer(DeviceContribution.Update("dev-0", new float[] { -1, 1, 1 }, 1, 0));
        version.Offer(DeviceContribution.Update("dev-1", new float[] { 1, 1, -1 }, 1, 0));
        version.Offer(DeviceContribution.Update("dev-2", new float[] { 1, -1, -1 }, 1, 0));
        float[] model = [0, 0, 0];
        version.Complete(model);
        Assert.Equal([0.01f, 0.01f, -0.01f], model);
    }

    /// <summary>FedBuffStrategy's example: K = 2, Δ = [2] at τ = 0 and Δ = [4] at τ = 3 give x += (2 + 4/2)/2 = 2.</summary>
    [Fact]
    public void FedBuffExample()
    {
        var strategy = new FedBuffStrategy(2, new AsyncOptions(), Server());
        Assert.True(strategy.AddsEncodedUpdates);
        var version = strategy.Begin(strategy.Plan(Context(5), Fleet)!);
        Assert.Null(version.Offer(DeviceContribution.Update("dev-0", new float[] { 2 }, 50, 5)));
        Assert.False(version.IsReady);
        Assert.Null(version.Offer(DeviceContribution.Update("dev-0", new float[] { 4 }, 50, 2)));
        Assert.True(version.IsReady);
        Assert.True(version.IsFull);
        Assert.Contains("full", version.Offer(DeviceContribution.Update("dev-1", new float[] { 4 }, 50, 5))!.Reason);
        float[] model = [0];
        version.Complete(model);
        Assert.Equal(2f, model[0], 1e-6f);
    }

    [Fact]
    public void FedBuffRefusesUpdatesBeyondTheCutOff()
    {
        var strategy = new FedBuffStrategy(2, new AsyncOptions { MaxStaleness = 3, Staleness = new ConstantStaleness() }, Server());
        var version = strategy.Begin(strategy.Plan(Context(10), Fleet)!);
        Assert.Equal(RefusalKind.TooStale, version.Offer(DeviceContribution.Update("dev-0", new float[] { 1 }, 1, 6))!.Kind);
        Assert.Null(version.Offer(DeviceContribution.Update("dev-0", new float[] { 1 }, 1, 7)));
    }

    /// <summary>
    /// A robust FedBuff buffer: K = 5 with one Gaussian-sized update; a robust rule (the fleet-wide f = 4 capped to what
    /// 5 rows tolerate: 2, Krum 1) keeps the model near the honest updates, the mean does not.
    /// </summary>
    [Theory]
    [InlineData("mean", false)]
    [InlineData("trimmed-mean", true)]
    [InlineData("median", true)]
    [InlineData("geomed", true)]
    [InlineData("centered-clip", true)]
    [InlineData("multi-krum", true)]
    public void FedBuffWithARobustRuleResistsAnOutlier(string rule, bool robust)
    {
        var strategy = new FedBuffStrategy(5, new AsyncOptions(), Server(rule, f: 4));
        Assert.Equal(rule == "mean", strategy.AddsEncodedUpdates);
        Assert.Equal(rule.EndsWith("krum", StringComparison.Ordinal) ? 1 : 2, strategy.Server.EffectiveF(5));
        var version = strategy.Begin(strategy.Plan(Context(0), Fleet)!);
        float[] honest = [1.0f, 1.1f, 0.9f, 1.05f];
        for (int i = 0; i < honest.Length; i++)
        {
            Assert.Null(version.Offer(DeviceContribution.Update($"dev-{i}", new[] { honest[i] }, 1, 0)));
        }

        Assert.Null(version.Offer(DeviceContribution.Update("dev-9", new float[] { 1000 }, 1, 0)));
        float[] model = [0];
        version.Complete(model);
        Assert.Equal(robust, Math.Abs(model[0] - 1f) < 0.5f);
    }

    /// <summary>FedAsyncStrategy's example, stale: x = [0] now, the device trained from x_τ = [2] and sent Δ = [2];
    /// α = 0.5 with s constant: x ← ½·0 + ½·4 = 2.</summary>
    [Fact]
    public void FedAsyncMixesTowardsTheDeviceModel()
    {
        var strategy = new FedAsyncStrategy(0.5, new AsyncOptions { Staleness = new ConstantStaleness() }, Server());
        Assert.False(strategy.AddsEncodedUpdates);
        float[] model = [0];
        var version = strategy.Begin(strategy.Plan(Context(3, model: model), Fleet)!);
        Assert.Equal(RefusalKind.TooStale, version.Offer(DeviceContribution.Update("dev-0", new float[] { 2 }, 1, 2))!.Kind); // x_τ unknown
        Assert.Null(version.Offer(DeviceContribution.Update("dev-0", new float[] { 2 }, 1, 2) with { BaseModel = new float[] { 2 } }));
        Assert.True(version.IsReady);
        version.Complete(model);
        Assert.Equal([2f], model);
        Assert.Throws<ArgumentException>(() => new FedAsyncStrategy(0.5, new AsyncOptions(), Server("trimmed-mean", f: 1)));
    }

    /// <summary>FedFixStrategy's example: Δt = 10 s, n = 4, [1] after 5 s and [2] after 25 s: x += (1·1 + 3·2)/4 = 1.75.</summary>
    [Fact]
    public void FedFixExample()
    {
        var strategy = new FedFixStrategy(TimeSpan.FromSeconds(10), new AsyncOptions(), Server());
        var plan = strategy.Plan(Context(4, fleet: 4), Fleet)!;
        Assert.Equal(T0 + TimeSpan.FromSeconds(10), plan.Deadline);
        var version = strategy.Begin(plan);
        Assert.Equal(DeadlineDecision.Extend, version.AtDeadline());
        Assert.Null(version.Offer(DeviceContribution.Update("dev-0", new float[] { 1 }, 1, 4) with { TrainingTime = TimeSpan.FromSeconds(5) }));
        Assert.Null(version.Offer(DeviceContribution.Update("dev-1", new float[] { 2 }, 1, 2) with { TrainingTime = TimeSpan.FromSeconds(25) }));
        Assert.Contains("already answered", version.Offer(DeviceContribution.Update("dev-1", new float[] { 9 }, 1, 3))!.Reason); // once per period
        Assert.False(version.IsReady); // only the period's end aggregates
        Assert.Equal(DeadlineDecision.Aggregate, version.AtDeadline());
        float[] model = [0];
        version.Complete(model);
        Assert.Equal(1.75f, model[0], 1e-6f);
    }

    /// <summary>Centered clipping starts from the previous aggregate, also in a strategy rebuilt from the persisted state.</summary>
    [Fact]
    public void CenteredClippingKeepsItsCentreAcrossVersionsAndARestart()
    {
        float[] RunVersion(FederationStrategy strategy, long v, float[] model, params float[] updates)
        {
            var version = strategy.Begin(strategy.Plan(Context(v), Fleet[..updates.Length])!);
            for (int i = 0; i < updates.Length; i++)
            {
                Assert.Null(version.Offer(DeviceContribution.Update($"dev-{i}", new[] { updates[i] }, 1, v)));
            }

            version.Complete(model);
            return model;
        }

        // τ = 1, L = 1 (Server's parameters). v1 from centre 0: ½·0.5 + ½·1 = 0.75. v2 from centre 0.75 over 0.75 and 10:
        // 0.75 + ½·0 + ½·1 = 1.25 (from 0 it would be 0.375 + 0.5 = 0.875).
        var first = new SyncRoundStrategy(new SyncRoundOptions(), Server("centered-clip", f: 0));
        var model = RunVersion(first, 0, [0], 0.5f, 10f);
        Assert.Equal(0.75f, model[0], 1e-6f);
        var persisted = first.State.TakeChanged();
        Assert.Contains(persisted, p => p.Name == "centered-clip/centre");

        var restored = new ServerState();
        foreach (var (name, vector) in persisted)
        {
            restored.Restore(name, vector);
        }

        var second = new SyncRoundStrategy(new SyncRoundOptions(), Server("centered-clip", f: 0, state: restored));
        RunVersion(second, 1, model, 0.75f, 10f);
        Assert.Equal(0.75f + 1.25f, model[0], 1e-5f);
    }

    [Theory]
    [InlineData("fedavgm")]
    [InlineData("fedadam")]
    [InlineData("fedyogi")]
    [InlineData("fedadagrad")]
    public void ServerOptimizerMomentsSurviveARestart(string optimizer)
    {
        float[] Version(FederationStrategy strategy, long v, float[] model, float delta)
        {
            var version = strategy.Begin(strategy.Plan(Context(v), Fleet[..1])!);
            Assert.Null(version.Offer(DeviceContribution.Update("dev-0", new[] { delta, -delta }, 1, v)));
            version.Complete(model);
            return model;
        }

        var uninterrupted = new SyncRoundStrategy(new SyncRoundOptions(), Server(optimizer: optimizer, eta: 0.1, d: 2));
        var expected = Version(uninterrupted, 1, Version(uninterrupted, 0, [0, 0], 2f), 1f);

        var before = new SyncRoundStrategy(new SyncRoundOptions(), Server(optimizer: optimizer, eta: 0.1, d: 2));
        var model = Version(before, 0, [0, 0], 2f);
        var restored = new ServerState();
        foreach (var (name, vector) in before.State.TakeChanged())
        {
            restored.Restore(name, vector);
        }

        var after = new SyncRoundStrategy(new SyncRoundOptions(), Server(optimizer: optimizer, eta: 0.1, d: 2, state: restored));
        Assert.Equal(expected, Version(after, 1, model, 1f));

        var forgetful = new SyncRoundStrategy(new SyncRoundOptions(), Server(optimizer: optimizer, eta: 0.1, d: 2));
        Assert.NotEqual(expected, Version(forgetful, 1, Version(new SyncRoundStrategy(new SyncRoundOptions(), Server(optimizer: optimizer, eta: 0.1, d: 2)), 0, [0, 0], 2f), 1f));
    }

    /// <summary>
    /// Byz-EF21: the server keeps g_i ← g_i + c_i per device and the rule sees the g_i. Two honest devices send their
    /// true Δ = 1 once (g = C(Δ⁰)) then c = 0; the attacker sends 100 every version. The median over the estimates
    /// stays at 1; over the messages of the second version it would be 0.
    /// </summary>
    [Fact]
    public void ByzEf21AggregatesThePerDeviceEstimates()
    {
        var state = new ServerState();
        var strategy = new SyncRoundStrategy(new SyncRoundOptions(), Server("median", estimate: ServerEstimate.PerDevice, state: state));
        float[] model = [0];
        float[][] messages = [[1, 1, 100], [0, 0, 100]];
        for (int v = 0; v < 2; v++)
        {
            var version = strategy.Begin(strategy.Plan(Context(v, fleet: 3), Fleet[..3])!);
            for (int i = 0; i < 3; i++)
            {
                Assert.Null(version.Offer(DeviceContribution.Update($"dev-{i}", new[] { messages[v][i] }, 1, v)));
            }

            version.Complete(model);
        }

        Assert.Equal([2f], model);
        Assert.True(state.TryGet("ef21/device/dev-2", out var attacker));
        Assert.Equal([200f], attacker);
    }

    /// <summary>EF21 with one shared estimate: g ← g + (k/n)·mean(c) over k of n devices, x ← x + η·g.</summary>
    [Fact]
    public void Ef21SharedEstimateStepsAlongG()
    {
        var strategy = new SyncRoundStrategy(new SyncRoundOptions(), Server(estimate: ServerEstimate.Shared));
        float[] model = [0];
        var version = strategy.Begin(strategy.Plan(Context(0, fleet: 4), Fleet[..2])!);
        version.Offer(DeviceContribution.Update("dev-0", new float[] { 2 }, 1, 0));
        version.Offer(DeviceContribution.Update("dev-1", new float[] { 4 }, 1, 0));
        version.Complete(model);
        Assert.Equal([1.5f], model); // g = (2/4)·3
        version = strategy.Begin(strategy.Plan(Context(1, fleet: 4), Fleet[..2])!);
        version.Offer(DeviceContribution.Update("dev-0", new float[] { 0 }, 1, 1));
        version.Offer(DeviceContribution.Update("dev-1", new float[] { 0 }, 1, 1));
        version.Complete(model);
        Assert.Equal([3f], model); // g unchanged, x moves by g again
    }

    [Theory]
    [InlineData("fedbuff", 3, 0.5)]
    [InlineData("constant", 3, 1.0)]
    [InlineData("polynomial:1", 3, 0.25)]
    [InlineData("hinge:10,4", 6, 1.0 / 21)]
    public void StalenessFunctionsParse(string spec, int staleness, double weight)
    {
        Assert.True(StalenessWeightings.TryParse(spec, out var parsed, out _));
        Assert.Equal(weight, parsed!.Weight(staleness), 12);
        Assert.False(StalenessWeightings.TryParse("hinge:x", out _, out var problem));
        Assert.Contains("hinge:x", problem);
    }
}
