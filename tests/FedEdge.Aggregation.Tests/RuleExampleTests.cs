using FedEdge.Aggregation.PreAggregation;
using FedEdge.Aggregation.Rules;

namespace FedEdge.Aggregation.Tests;

/// <summary>The worked examples of the rules' doc comments and published examples, computed by hand.</summary>
public class RuleExampleTests
{
    private static UpdateBatch Rows(params float[][] rows) => UpdateBatch.FromRows(rows);

    private static float[] Run(IAggregationRule rule, UpdateBatch batch)
    {
        var result = new float[batch.Dimension];
        rule.Aggregate(batch, result);
        return result;
    }

    [Fact]
    public void GeometricMedianMatchesByzFLExample()
    {
        var result = Run(new GeometricMedianRule(nu: 0.1, iterations: 3), Rows([1, 2, 3], [4, 5, 6], [7, 8, 9]));
        TestData.AssertClose([3.78788764f, 4.78788764f, 5.78788764f], result, 1e-6);
    }

    [Fact]
    public void GeometricMedianConvergesToTheMiddlePointOfThreeCollinearPoints()
    {
        // On a line the geometric median of three points is the middle one.
        var result = Run(new GeometricMedianRule(nu: 1e-6, iterations: 200), Rows([0, 0], [1, 1], [5, 5]));
        TestData.AssertClose([1f, 1f], result, 1e-3);
    }

    [Fact]
    public void WeightedMeanUsesTheWeights()
    {
        var batch = UpdateBatch.FromRows([[1, 2], [3, 6]], [1f, 3f]);
        Assert.Equal([2.5f, 5f], Run(new WeightedMeanRule(), batch));
    }

    [Fact]
    public void MedianTakesTheMiddleValuePerCoordinate()
    {
        Assert.Equal([2f, 20f], Run(new CoordinateWiseMedianRule(), Rows([1, 10], [2, 30], [100, 20])));
    }

    [Fact]
    public void MedianOfAnEvenCountAveragesTheTwoMiddleValues()
    {
        Assert.Equal([2.5f], Run(new CoordinateWiseMedianRule(), Rows([4], [1], [3], [2])));
    }

    [Fact]
    public void TrimmedMeanDropsFLargestAndSmallest()
    {
        Assert.Equal([3f], Run(new TrimmedMeanRule(1), Rows([1], [2], [3], [4], [100])));
    }

    [Fact]
    public void KrumPicksTheUpdateWithTheLowestScore()
    {
        var batch = Rows([0], [1], [2], [3], [100]);
        Assert.Equal([1f], Run(new KrumRule(1), batch));
        var scores = KrumScores.Compute(batch, 1);
        Assert.Equal([5.0, 2.0, 2.0, 5.0, (97.0 * 97) + (98.0 * 98)], scores);
    }

    [Fact]
    public void MultiKrumAveragesTheMLowestScores()
    {
        Assert.Equal([1.5f], Run(new MultiKrumRule(1, 2), Rows([0], [1], [2], [3], [100])));
    }

    [Fact]
    public void CenteredClippingClipsAroundTheCentre()
    {
        Assert.Equal(0.75f, Run(new CenteredClippingRule(tau: 1, iterations: 1), Rows([0.5f], [10f]))[0], 6);
    }

    [Fact]
    public void CenteredClippingStartsTheNextRoundFromThePreviousAggregate()
    {
        var rule = new CenteredClippingRule(tau: 1, iterations: 1);
        Run(rule, Rows([0.5f], [10f]));
        // v₀ = 0.75: distances 0.25 (kept) and 9.25 (clipped to 1/9.25): v = 0.75 + ½(−0.25) + ½·9.25/9.25.
        Assert.Equal(0.75f - 0.125f + 0.5f, Run(rule, Rows([0.5f], [10f]))[0], 5);
    }

    [Fact]
    public void SignVoteCountsOneVotePerDevice()
    {
        Assert.Equal([1f, -1f, 1f], Run(new SignMajorityVoteRule(), Rows([1, -2, 0], [-1, -3, 5], [4, -1, -2])));
    }

    [Fact]
    public void PackedSignVoteMatchesTheDocExample()
    {
        var vote = new SignMajorityVoteAccumulator(3);
        vote.AddPacked([0b110]);
        vote.AddPacked([0b011]);
        vote.AddPacked([0b100]);
        var result = new float[3];
        vote.Complete(result);
        Assert.Equal([1f, -1f, -1f], result);
        vote.AddPacked([0b001]);
        vote.Complete(result);
        Assert.Equal([0f, 0f, 0f], result);
        Assert.Equal(2, vote.NegativeCount(1));
    }

    [Fact]
    public void NearestNeighbourMixingAveragesTheNMinusFNearest()
    {
        var mixed = new NearestNeighborMixingPreAggregator(1).Apply(Rows([0], [1], [10]));
        Assert.Equal([0.5f, 0.5f, 5.5f], mixed.Data.ToArray());
    }

    [Fact]
    public void MixingBeforeTheTrimmedMeanRemovesASignFlipperThatTrimmingAloneKeeps()
    {
        // Scaled signs (s = 1): four honest rows and one device sending the flipped sign of the honest majority.
        // Per coordinate the flipper's −1 is not an extreme (the honest vote is split 3:1), so the trimmed mean (f = 1)
        // keeps it: (−1 + 1 + 1) / 3 = 1/3 instead of the honest mean 1/2. NNM (f = 1) replaces each row by the mean
        // of its 4 nearest: every honest row's nearest are the honest rows (squared distances 4 or 8, ties to the
        // lower index; the flipper is at 8 or 12) → ½·[1, 1, 1]; the flipper's are itself and h1, h2, h3 → [0, 0, 0].
        // The trimmed mean of those rows drops the 0 and returns the honest mean.
        var batch = Rows([1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1], [-1, -1, -1]);
        TestData.AssertClose([1f / 3, 1f / 3, 1f / 3], Run(new TrimmedMeanRule(1), batch), 1e-6);
        var mixed = new NearestNeighborMixingPreAggregator(1).Apply(batch);
        Assert.Equal([0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0f, 0f, 0f], mixed.Data.ToArray());
        var rule = AggregationRuleFactory.Create("nnm+trimmed-mean", new RuleParameters { F = 1 }, 5);
        Assert.Equal("nnm+trimmed-mean", rule.Name);
        Assert.Equal([0.5f, 0.5f, 0.5f], Run(rule, batch));
    }

    [Fact]
    public void BucketingAveragesBucketsOfAPermutation()
    {
        var batch = Rows([1], [2], [3], [4], [5]);
        var buckets = new BucketingPreAggregator(2, seed: 7).Apply(batch);
        Assert.Equal(3, buckets.Count);
        var means = buckets.Data.ToArray();
        // Bucket means of a permutation: the sum over buckets weighted by their sizes is the total, 15.
        Assert.Equal(15.0, (2 * (means[0] + means[1])) + means[2], 4);
        Assert.All(means, m => Assert.True(m >= 1 && m <= 5));
        // Same seed, same buckets.
        Assert.Equal(means, new BucketingPreAggregator(2, seed: 7).Apply(batch).Data.ToArray());
    }

    [Fact]
    public void RulesRefuseAnFTooLargeForN()
    {
        var batch = Rows([1], [2], [3], [4]);
        var result = new float[1];
        Assert.Throws<ArgumentException>(() => new TrimmedMeanRule(2).Aggregate(batch, result));
        Assert.Throws<ArgumentException>(() => new KrumRule(1).Aggregate(batch, result)); // needs n ≥ 5
        Assert.Throws<ArgumentException>(() => new MultiKrumRule(0, 5).Aggregate(batch, result));
        Assert.Throws<ArgumentException>(() => new GeometricMedianRule(f: 2).Aggregate(batch, result));
        Assert.Throws<ArgumentException>(() => new CoordinateWiseMedianRule().Aggregate(batch, new float[2]));
    }

    [Fact]
    public void FactoryBuildsEveryNamedRule()
    {
        foreach (var name in AggregationRuleFactory.Names)
        {
            Assert.Equal(name, AggregationRuleFactory.Create(name, new RuleParameters { F = 1 }, 7).Name);
        }

        Assert.Equal("bucketing+median", AggregationRuleFactory.Create("median", new RuleParameters { BucketSize = 2 }, 7).Name);
        Assert.Equal("nnm+bucketing+median", AggregationRuleFactory.Create("nnm+median", new RuleParameters { F = 1, BucketSize = 2 }, 7).Name);
        Assert.Throws<ArgumentException>(() => AggregationRuleFactory.Create("average", new RuleParameters(), 3));
        Assert.Throws<ArgumentException>(() => AggregationRuleFactory.Create("nnm+mean", new RuleParameters(), 3));
        Assert.Throws<ArgumentException>(() => AggregationRuleFactory.Create("nnm+", new RuleParameters(), 3));
    }
}
