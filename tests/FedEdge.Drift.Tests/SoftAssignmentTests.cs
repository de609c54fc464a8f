namespace FedEdge.Drift.Tests;

public class SoftAssignmentTests
{
    [Fact]
    public void WorkedExample()
    {
        var a = SoftClusterAssignment.Assign([0f, MathF.Log(3)], [0], [0.5f, 0.5f], [0.5f, 0.5f, 0.5f, 0.5f], 2);
        Assert.Equal(0.75f, a.Weights[0], 5);
        Assert.Equal(0.25f, a.Weights[1], 5);
        Assert.Equal(a.Prior, a.Weights);
        Assert.Equal(0.75f, a.LabelHistogram[0], 5);
        Assert.Equal(0.25f, a.LabelHistogram[2], 5);
        Assert.Equal(0f, a.LabelHistogram[1] + a.LabelHistogram[3]);
    }

    [Fact]
    public void SamplesGoToTheClusterThatExplainsThem()
    {
        // Samples 0–49 fit cluster 0 (loss 0.1 vs 3), samples 50–99 fit cluster 1.
        var losses = new float[100 * 2];
        var labels = new long[100];
        for (var i = 0; i < 100; i++)
        {
            losses[i * 2] = i < 50 ? 0.1f : 3f;
            losses[i * 2 + 1] = i < 50 ? 3f : 0.1f;
            labels[i] = i % 3;
        }

        float[] uniform = [1 / 3f, 1 / 3f, 1 / 3f, 1 / 3f, 1 / 3f, 1 / 3f];
        var a = SoftClusterAssignment.Assign(losses, labels, [0.5f, 0.5f], uniform, 3);
        for (var i = 0; i < 100; i++)
        {
            Assert.True(a.WeightsOf(i)[i < 50 ? 0 : 1] > 0.9f);
            Assert.Equal(1f, a.WeightsOf(i)[0] + a.WeightsOf(i)[1], 5);
        }

        Assert.Equal(0.5f, a.Prior[0], 3);
        Assert.Equal(50f, a.Mass(0), 1);

        // A skewed prior shifts weight but does not overturn a clear loss difference.
        var skewed = SoftClusterAssignment.Assign(losses, labels, [0.9f, 0.1f], uniform, 3);
        Assert.True(skewed.Prior[0] > a.Prior[0]);
        Assert.True(skewed.WeightsOf(99)[1] > 0.5f);
    }

    [Fact]
    public void LabelDistributionDividesOutTheLabelMix()
    {
        // Equal losses: a cluster whose P_c(y) makes label 0 rare gets *more* weight for label-0 samples (p(x|y) form).
        var a = SoftClusterAssignment.Assign([1f, 1f], [0], [0.5f, 0.5f], [0.9f, 0.1f, 0.1f, 0.9f], 2);
        Assert.True(a.Weights[1] > 0.85f);
    }

    [Fact]
    public void ServerLabelDistributionsAreNormalised()
    {
        var p = SoftClusterAssignment.LabelDistributions([3, 1, 0, 0], 2, 2, smoothing: 1);
        Assert.Equal([4f / 6, 2f / 6, 0.5f, 0.5f], p);
    }

    [Fact]
    public void SampledClustersFollowTheWeights()
    {
        var losses = new float[4000 * 2];
        for (var i = 0; i < 4000; i++)
        {
            losses[i * 2 + 1] = MathF.Log(3); // w = (¾, ¼) for every sample
        }

        var a = SoftClusterAssignment.Assign(losses, new long[4000], [0.5f, 0.5f], [1f, 1f], 1);
        var drawn = SoftClusterAssignment.SampleClusters(a, new Random(5));
        var share = drawn.Count(c => c == 0) / 4000.0;
        Assert.InRange(share, 0.72, 0.78);
    }

    [Fact]
    public void MatcherGivesEachClusterTheModelThatFitsIt()
    {
        // 4 devices: 0,1 in new cluster 0 fit model 1; 2,3 in new cluster 1 fit model 0.
        float[] loss = [2, 0.1f, 2, 0.2f, 0.1f, 2, 0.3f, 2];
        Assert.Equal([1, 0], ClusterModelMatcher.Match([0, 0, 1, 1], loss, 2, 2));

        // Three clusters, one model: all start from it.
        Assert.Equal([0, 0, 0], ClusterModelMatcher.Match([0, 1, 2], [1f, 1f, 1f], 3, 1));
    }
}
