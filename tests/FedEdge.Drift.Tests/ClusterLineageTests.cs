namespace FedEdge.Drift.Tests;

public class ClusterLineageTests
{
    [Fact]
    public void SplitKeepsTheLargerPartAndCopiesTheParentForTheOther()
    {
        // Two models; devices 0–3 were in model 0 (prior 0.9), devices 4–5 in model 1. New fit: {0,1}, {2,3}, {4,5}.
        float[] affinity = [0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.1f, 0.9f, 0.1f, 0.9f];
        var result = ClusterLineage.Match([0, 0, 1, 1, 2, 2], affinity, k: 3, models: 2);
        Assert.Equal([0, 0, 1], result.Parents);
        Assert.Equal([true, false, true], result.Continues);
    }

    [Fact]
    public void TheLargerShareOfAParentContinuesIt()
    {
        // Model 0's devices 0–2 stay together, device 3 leaves with the new group {3}; {0,1,2} continues model 0.
        float[] affinity = [0.9f, 0.9f, 0.9f, 0.9f];
        var result = ClusterLineage.Match([1, 1, 1, 0], affinity, k: 2, models: 1);
        Assert.Equal([0, 0], result.Parents);
        Assert.Equal([false, true], result.Continues);
    }

    [Fact]
    public void MergeContinuesOneModelAndLeavesTheOtherUncontinued()
    {
        // Three models; the devices of models 0 and 2 now form one cluster: one of the two continues, the other is free to retire.
        float[] affinity =
        [
            0.9f, 0.05f, 0.05f,
            0.9f, 0.05f, 0.05f,
            0.05f, 0.9f, 0.05f,
            0.05f, 0.05f, 0.9f,
            0.05f, 0.05f, 0.9f,
            0.05f, 0.05f, 0.9f,
        ];
        var result = ClusterLineage.Match([0, 0, 1, 0, 0, 0], affinity, k: 2, models: 3);
        Assert.Equal(1, result.Parents[1]);
        Assert.Equal(2, result.Parents[0]); // three of its five devices came from model 2, two from model 0 (not continued)
        Assert.All(result.Continues, Assert.True);
    }

    [Fact]
    public void WithoutExistingModelsEveryClusterIsNew_AndBadAffinitiesAreRefused()
    {
        var result = ClusterLineage.Match([0, 1, 1], [], k: 2, models: 0);
        Assert.Equal([-1, -1], result.Parents);
        Assert.Equal([false, false], result.Continues);
        Assert.Throws<ArgumentException>(() => ClusterLineage.Match([0, 1], [0.5f], k: 2, models: 1));
        Assert.Throws<ArgumentException>(() => ClusterLineage.Match([0, 1], [0.5f, float.NaN], k: 2, models: 1));
        Assert.Throws<ArgumentException>(() => ClusterLineage.Match([0, 1], [0.5f, 1.5f], k: 2, models: 1));
    }
}
