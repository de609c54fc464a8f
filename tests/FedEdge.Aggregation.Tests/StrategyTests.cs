using FedEdge.Aggregation.Rules;
using FedEdge.Aggregation.ServerOptimizers;
using FedEdge.Aggregation.Strategies;

namespace FedEdge.Aggregation.Tests;

/// <summary>Whole rounds through the strategy seam.</summary>
public class StrategyTests
{
    private static readonly DeviceDescriptor[] Fleet =
        Enumerable.Range(0, 10).Select(i => new DeviceDescriptor($"dev-{i}", 100)).ToArray();

    [Fact]
    public void ConfigureRoundSamplesAFractionDeterministically()
    {
        var strategy = new RobustAggregationStrategy(new WeightedMeanRule(),
            new RoundOptions { FractionFit = 0.3, MinimumDevices = 2, Seed = 5, DeviceConfig = new Dictionary<string, string> { ["local_epochs"] = "2" } });
        var plan = strategy.ConfigureRound(new RoundContext(1, 7), Fleet);
        Assert.Equal(3, plan.Assignments.Count);
        Assert.Equal(3, plan.Assignments.Select(a => a.DeviceId).Distinct().Count());
        Assert.All(plan.Assignments, a => Assert.Equal("2", a.Config["local_epochs"]));
        Assert.All(plan.Assignments, a => Assert.Equal("7", a.Config["model_version"]));
        Assert.Equal(plan.Assignments.Select(a => a.DeviceId), strategy.ConfigureRound(new RoundContext(1, 7), Fleet).Assignments.Select(a => a.DeviceId));
    }

    [Fact]
    public void StreamingMeanRoundRefusesBadContributionsWithReasons()
    {
        var strategy = new RobustAggregationStrategy(new WeightedMeanRule());
        var plan = strategy.ConfigureRound(new RoundContext(1, 1), Fleet[..3]);
        var round = strategy.BeginAggregation(plan, 2);
        Assert.True(round.Submit(DeviceContribution.Update("dev-0", new float[] { 1, 2 }, 1, 1)).Accepted);
        Assert.Contains("NaN", round.Submit(DeviceContribution.Update("dev-1", new float[] { float.NaN, 2 }, 1, 1)).Reason);
        Assert.Contains("already contributed", round.Submit(DeviceContribution.Update("dev-0", new float[] { 1, 2 }, 1, 1)).Reason);
        Assert.Contains("not selected", round.Submit(DeviceContribution.Update("dev-9", new float[] { 1, 2 }, 1, 1)).Reason);
        Assert.Contains("coordinates", round.Submit(DeviceContribution.Update("dev-2", new float[] { 1 }, 1, 1)).Reason);
        Assert.Contains("PackedSigns", round.Submit(DeviceContribution.Signs("dev-2", new byte[1], 1)).Reason);
        Assert.True(round.Submit(DeviceContribution.Update("dev-2", new float[] { 3, 6 }, 3, 1)).Accepted);
        float[] model = [10, 10];
        var result = round.Complete(model);
        Assert.Equal([12.5f, 15f], model);
        Assert.Equal(2, result.Accepted);
        Assert.Equal(5, result.Refused.Count);
    }

    [Fact]
    public void BatchRoundWithKrumAndServerMomentum()
    {
        var strategy = new RobustAggregationStrategy(new KrumRule(1), serverOptimizer: new FedAvgMOptimizer(1, 0.9));
        var plan = strategy.ConfigureRound(new RoundContext(1, 1), Fleet[..5]);
        var round = strategy.BeginAggregation(plan, 1);
        float[] values = [0, 1, 2, 3, 100];
        for (int i = 0; i < 5; i++)
        {
            Assert.True(round.Submit(DeviceContribution.Update($"dev-{i}", new[] { values[i] }, 1, 1)).Accepted);
        }

        float[] model = [0];
        round.Complete(model);
        Assert.Equal([1f], model);
    }

    [Fact]
    public void SignVoteRoundMovesAlongTheMajority()
    {
        var strategy = new SignVoteStrategy(0.01);
        var plan = strategy.ConfigureRound(new RoundContext(1, 1), Fleet[..3]);
        var round = strategy.BeginAggregation(plan, 3);
        round.Submit(DeviceContribution.Signs("dev-0", new byte[] { 0b110 }, 1));
        round.Submit(DeviceContribution.Signs("dev-1", new byte[] { 0b011 }, 1));
        Assert.False(round.Submit(DeviceContribution.Signs("dev-2", new byte[] { 0, 0 }, 1)).Accepted);
        round.Submit(DeviceContribution.Signs("dev-2", new byte[] { 0b100 }, 1));
        float[] model = [0, 0, 0];
        round.Complete(model);
        Assert.Equal([0.01f, -0.01f, -0.01f], model);
    }

    [Fact]
    public void EvaluationIsSampleWeighted()
    {
        var strategy = new SignVoteStrategy(1);
        var summary = strategy.AggregateEvaluation(3,
        [
            new DeviceEvaluation("a", 100, 1.0, new Dictionary<string, double> { ["accuracy"] = 0.9 }),
            new DeviceEvaluation("b", 300, 2.0, new Dictionary<string, double> { ["accuracy"] = 0.5 }),
            new DeviceEvaluation("c", 50, double.NaN),
        ]);
        Assert.Equal(2, summary.Devices);
        Assert.Equal(1.75, summary.Loss, 12);
        Assert.Equal(0.6, summary.Metrics["accuracy"], 12);
    }
}
