using CsCheck;
using FedEdge.Aggregation.Rules;

namespace FedEdge.Aggregation.Tests;

/// <summary>Bad updates are refused with a reason before any rule's arithmetic runs.</summary>
public class ValidationTests
{
    private sealed class SpyRule : AggregationRule
    {
        public int Calls { get; private set; }

        public override string Name => "spy";

        protected override void AggregateCore(UpdateBatch updates, Span<float> result) => Calls++;
    }

    public static TheoryData<float> NonFinite => [float.NaN, float.PositiveInfinity, float.NegativeInfinity];

    [Theory]
    [MemberData(nameof(NonFinite))]
    public void NonFiniteUpdatesNeverReachARule(float poison)
    {
        Gen.Select(TestData.Batch(1, 12, 100), Gen.Int[0, int.MaxValue]).Sample(t =>
        {
            var ((n, d, data), at) = t;
            int index = at % data.Length;
            data[index] = poison;
            var spy = new SpyRule();
            var error = Assert.Throws<InvalidUpdateException>(() => spy.Aggregate(new UpdateBatch(data, n, d), new float[d]));
            Assert.Equal(0, spy.Calls);
            Assert.Equal(index / d, error.UpdateIndex);
            Assert.Contains($"coordinate {index % d}", error.Reason);
            foreach (var name in AggregationRuleFactory.Names)
            {
                var rule = AggregationRuleFactory.Create(name, new RuleParameters(), n);
                Assert.Throws<InvalidUpdateException>(() => rule.Aggregate(new UpdateBatch(data, n, d), new float[d]));
            }
        }, iter: 50);
    }

    [Fact]
    public void ReasonsNameTheProblem()
    {
        var validator = new UpdateValidator(4);
        Assert.True(validator.Validate([1, 2, 3, 4]).IsValid);
        Assert.Equal("it has 3 coordinates, expected 4", validator.Validate([1, 2, 3]).Reason);
        Assert.Equal("coordinate 2 is NaN", validator.Validate([1, 2, float.NaN, 4]).Reason);
        Assert.Equal("coordinate 3 is -Inf", validator.Validate([1, 2, 3, float.NegativeInfinity]).Reason);
        Assert.Contains("weight", validator.Validate([1, 2, 3, 4], -1).Reason);
        Assert.Contains("weight", validator.Validate([1, 2, 3, 4], double.NaN).Reason);
    }

    [Fact]
    public void BadWeightsAndShapesAreRefused()
    {
        Assert.Throws<InvalidUpdateException>(() =>
            new WeightedMeanRule().Aggregate(UpdateBatch.FromRows([[1], [2]], [1f, -1f]), new float[1]));
        Assert.Throws<InvalidUpdateException>(() =>
            new WeightedMeanRule().Aggregate(UpdateBatch.FromRows([[1], [2]], [0f, 0f]), new float[1]));
        Assert.Throws<InvalidUpdateException>(() => UpdateBatch.FromRows([[1, 2], [3]]));
        Assert.Throws<ArgumentException>(() => new UpdateBatch(new float[5], 2, 3));
    }

    [Fact]
    public void StreamingAccumulatorsRefuseBadUpdatesAndKeepTheirState()
    {
        var mean = new WeightedMeanAccumulator(3);
        mean.Add([1, 2, 3], 1);
        Assert.Throws<InvalidUpdateException>(() => mean.Add([1, float.NaN, 3], 1));
        Assert.Throws<InvalidUpdateException>(() => mean.Add([1, 2], 1));
        var result = new float[3];
        mean.Complete(result);
        Assert.Equal([1f, 2f, 3f], result);
        Assert.Equal(1, mean.Count);

        var vote = new SignMajorityVoteAccumulator(10);
        Assert.Throws<InvalidUpdateException>(() => vote.AddPacked(new byte[3]));
        Assert.Throws<InvalidUpdateException>(() => vote.Add(new float[10] { 0, 0, 0, 0, 0, 0, 0, 0, 0, float.PositiveInfinity }));
        Assert.Equal(0, vote.Count);
    }

    [Fact]
    public void SignVoteRefusesMoreUpdatesThanItsCapacity()
    {
        var vote = new SignMajorityVoteAccumulator(8, capacity: 3);
        for (int i = 0; i < 3; i++)
        {
            vote.AddPacked([0xFF]);
        }

        Assert.Throws<InvalidOperationException>(() => vote.AddPacked([0xFF]));
        var result = new float[8];
        vote.Complete(result);
        Assert.All(result, v => Assert.Equal(-1f, v));
    }
}
