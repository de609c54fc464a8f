using FedEdge.Aggregation.Asynchronous;
using FedEdge.Aggregation.ServerOptimizers;
using FedEdge.Aggregation.Strategies;

namespace FedEdge.Aggregation.Tests;

/// <summary>Single steps of the server optimizers and the staleness formulas, against hand computation.</summary>
public class OptimizerAndStalenessTests
{
    [Fact]
    public void FedAvgMAccumulatesMomentum()
    {
        var optimizer = new FedAvgMOptimizer(learningRate: 1, momentum: 0.9);
        float[] model = [0];
        optimizer.Apply(model, [1]);
        Assert.Equal(1f, model[0], 6);
        optimizer.Apply(model, [1]);
        Assert.Equal(2.9f, model[0], 6);
    }

    [Fact]
    public void FedAvgMWithoutMomentumIsFedAvg()
    {
        float[] model = [1, 2];
        new FedAvgMOptimizer(1, 0).Apply(model, [0.5f, -1]);
        Assert.Equal([1.5f, 1f], model);
    }

    [Fact]
    public void FedAdagradStep()
    {
        float[] model = [0];
        new FedAdagradOptimizer(learningRate: 0.1, beta1: 0.9, tau: 1e-3).Apply(model, [2]);
        // m = 0.1·2 = 0.2; v = τ² + 4; x = 0.1·0.2/(√(4.000001) + 0.001)
        Assert.Equal(0.1 * 0.2 / (Math.Sqrt(4.000001) + 0.001), model[0], 6);
    }

    [Fact]
    public void FedAdamStep()
    {
        float[] model = [0];
        new FedAdamOptimizer(0.1, 0.9, 0.99, 1e-3).Apply(model, [2]);
        // v = 0.99·1e-6 + 0.01·4 = 0.04000099
        Assert.Equal(0.1 * 0.2 / (Math.Sqrt(0.04000099) + 0.001), model[0], 6);
    }

    [Fact]
    public void FedYogiStepAndSecondMoment()
    {
        float[] model = [0];
        var yogi = new FedYogiOptimizer(0.1, 0.9, 0.99, 1e-3);
        yogi.Apply(model, [2]);
        // v = 1e-6 − 0.01·4·sign(1e-6 − 4) = 0.040001
        Assert.Equal(0.1 * 0.2 / (Math.Sqrt(0.040001) + 0.001), model[0], 6);
        // Second step with Δ = 0: m = 0.18, v = 0.040001 − 0·… = 0.040001.
        float before = model[0];
        yogi.Apply(model, [0]);
        Assert.Equal(0.1 * 0.18 / (Math.Sqrt(0.040001) + 0.001), model[0] - before, 6);
    }

    [Fact]
    public void OptimizersRefuseMismatchedOrNonFiniteAggregates()
    {
        Assert.Throws<ArgumentException>(() => new FedAdamOptimizer().Apply(new float[2], new float[3]));
        Assert.Throws<InvalidUpdateException>(() => new FedAdamOptimizer().Apply(new float[1], [float.NaN]));
    }

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(3, 0.5)]
    [InlineData(8, 1.0 / 3)]
    public void FedBuffDiscount(int staleness, double expected) =>
        Assert.Equal(expected, new FedBuffStaleness().Weight(staleness), 12);

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(3, 0.5)]
    [InlineData(15, 0.25)]
    public void PolynomialDiscount(int staleness, double expected) =>
        Assert.Equal(expected, new PolynomialStaleness(0.5).Weight(staleness), 12);

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(4, 1.0)]
    [InlineData(5, 1.0 / 11)]
    [InlineData(6, 1.0 / 21)]
    public void HingeDiscount(int staleness, double expected) =>
        Assert.Equal(expected, new HingeStaleness(10, 4).Weight(staleness), 12);

    [Fact]
    public void ConstantDiscountAndNegativeStaleness()
    {
        Assert.Equal(1.0, new ConstantStaleness().Weight(1000));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FedBuffStaleness().Weight(-1));
    }

    [Fact]
    public void FedFixWeightsByPeriodsSpent()
    {
        Assert.Equal(0.3, FedFixWeighting.Weight(TimeSpan.FromSeconds(25), TimeSpan.FromSeconds(10), 0.1), 12);
        Assert.Equal(0.1, FedFixWeighting.Weight(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10), 0.1), 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => FedFixWeighting.Weight(TimeSpan.FromSeconds(1), TimeSpan.Zero, 0.1));
    }

    /// <summary>An update kept "compressed" as a constant vector; refuses itself when <see cref="Refuse"/> is set.</summary>
    private sealed class ConstantUpdate(int dimension, float value) : IAccumulableUpdate
    {
        public int Dimension => dimension;

        public string? Refuse { get; init; }

        public int Calls { get; private set; }

        public string? AddTo(Span<float> accumulator, float weight)
        {
            Calls++;
            if (Refuse is not null)
            {
                return Refuse;
            }

            foreach (ref float x in accumulator)
            {
                x += weight * value;
            }

            return null;
        }
    }

    [Fact]
    public void FedBuffTakesCompressedUpdatesLikeDecodedOnes()
    {
        // FedBuffStrategy's worked example, with the updates added in their compressed form.
        var server = new ServerAggregator(new ServerAggregatorOptions(), 2);
        var strategy = new FedBuffStrategy(2, new AsyncOptions { MaxStaleness = 10 }, server);
        var version = strategy.Begin(strategy.Plan(new VersionContext(11, DateTimeOffset.UnixEpoch, 4), [])!);
        DeviceContribution Encoded(IAccumulableUpdate update, long baseVersion) => new("dev", baseVersion, 1, default, update);
        var stale = new ConstantUpdate(2, 1000);
        Assert.Null(version.Offer(Encoded(new ConstantUpdate(2, 2), 11)));
        Assert.Equal(RefusalKind.TooStale, version.Offer(Encoded(stale, 0))!.Kind);
        Assert.Equal(0, stale.Calls); // refused for staleness before it is read
        var bad = new ConstantUpdate(2, 7) { Refuse = "coordinate 1 is NaN" };
        Assert.Contains("NaN", version.Offer(Encoded(bad, 11))!.Reason, StringComparison.Ordinal);
        Assert.Contains("coordinates", version.Offer(Encoded(new ConstantUpdate(3, 1), 11))!.Reason, StringComparison.Ordinal);
        Assert.Equal(1, version.Count); // neither refusal counted
        Assert.Null(version.Offer(Encoded(new ConstantUpdate(2, 4), 8)));
        Assert.True(version.IsFull);
        float[] model = [0, 1];
        version.Complete(model);
        Assert.Equal(2f, model[0], 6); // (2 + 4/2) / 2
        Assert.Equal(3f, model[1], 6);
    }
}
