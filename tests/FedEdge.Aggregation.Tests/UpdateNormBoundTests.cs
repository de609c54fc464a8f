namespace FedEdge.Aggregation.Tests;

public sealed class UpdateNormBoundTests
{
    [Fact]
    public void TheAbsoluteBoundRefusesAboveItFromTheFirstUpdate()
    {
        var bound = new UpdateNormBound(maxNorm: 10, maxToMedian: 0);
        Assert.Null(bound.Check(10));
        Assert.Equal("its L2 norm 10.01 is above the bound 10", bound.Check(10.01));
        Assert.StartsWith("its L2 norm is ", bound.Check(double.PositiveInfinity));
        Assert.NotNull(bound.Check(double.NaN));
    }

    [Fact]
    public void TheRelativeBoundAppliesOnceFiveNormsAreKnown_AndFollowsTheMedianNotTheMean()
    {
        var bound = new UpdateNormBound(maxNorm: 0, maxToMedian: 10);
        foreach (var norm in new[] { 1.0, 2, 3, 4 })
        {
            Assert.Null(bound.Check(1e30)); // not enough history: only the rule protects
            bound.Record(norm);
        }
        Assert.Null(bound.Median());
        bound.Record(1e30); // one accepted outlier does not move the median
        Assert.Equal(3, bound.Median());
        Assert.Null(bound.Check(30));
        Assert.Equal("its L2 norm 30.01 is above 10 × 3, the median norm of the recently accepted updates", bound.Check(30.01));
        Assert.NotNull(bound.Check(1e30));
        bound.Record(5);
        Assert.Equal(3.5, bound.Median());
    }

    [Fact]
    public void OnlyTheLastHundredNormsCount()
    {
        var bound = new UpdateNormBound(maxNorm: 0, maxToMedian: 2);
        for (var i = 0; i < UpdateNormBound.Window; i++) bound.Record(1);
        for (var i = 0; i < UpdateNormBound.Window; i++) bound.Record(100);
        Assert.Equal(100, bound.Median());
        Assert.Null(bound.Check(150));
    }

    [Fact]
    public void BoundsAreCheckedWhenConfigured()
    {
        Assert.False(new UpdateNormBound(0, 0).IsActive);
        Assert.Throws<ArgumentOutOfRangeException>(() => new UpdateNormBound(-1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new UpdateNormBound(0, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new UpdateNormBound(double.PositiveInfinity, 0));
    }
}
