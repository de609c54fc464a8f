namespace FedEdge.Drift.Tests;

public class ClusterCountTests
{
    /// <summary>k well-separated Gaussian blobs of 12 points each in 40 dimensions (prototype-like vectors).</summary>
    internal static float[] Blobs(int k, int perBlob, int d, double spread, int seed, double separation = 10)
    {
        var random = new Random(seed);
        var centres = new double[k * d];
        for (var i = 0; i < centres.Length; i++)
        {
            centres[i] = (random.NextDouble() * 2 - 1) * separation;
        }

        var points = new float[k * perBlob * d];
        for (var p = 0; p < k * perBlob; p++)
        {
            var c = p % k;
            for (var j = 0; j < d; j++)
            {
                points[p * d + j] = (float)(centres[c * d + j] + spread * Gaussian(random));
            }
        }

        return points;
    }

    internal static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    public void SilhouetteFindsTheNumberOfBlobs(int k)
    {
        var points = Blobs(k, 12, 40, 0.5, seed: k);
        var decision = new ClusterCountSelector().Select(points, k * 12, 40);
        Assert.Equal(k, decision.K);
        Assert.Equal(k, decision.BestK);
        Assert.True(decision.Silhouettes[k] > 0.8, $"silhouette {decision.Silhouettes[k]}");

        // Every blob is one cluster: points p and p + k share a blob and must share a cluster.
        for (var p = 0; p + k < k * 12; p++)
        {
            Assert.Equal(decision.Clustering.Assignments[p], decision.Clustering.Assignments[p + k]);
        }
    }

    [Fact]
    public void HysteresisKeepsKOnSmallNoiseAndSwitchesOnRealChange()
    {
        var selector = new ClusterCountSelector(new ClusterCountOptions { SwitchMargin = 0.1 });
        var threeBlobs = Blobs(3, 12, 40, 0.5, seed: 1);
        Assert.Equal(3, selector.Select(threeBlobs, 36, 40).K);

        // Same blobs with much more noise: silhouette flattens; the kept k must not flap.
        var noisy = Blobs(3, 12, 40, 3.0, seed: 1);
        var decision = selector.Select(noisy, 36, 40);
        Assert.Equal(3, decision.K);
        Assert.False(decision.Changed);

        // A genuinely different structure (6 blobs) wins by far more than the margin.
        var six = Blobs(6, 8, 40, 0.5, seed: 2);
        decision = selector.Select(six, 48, 40);
        Assert.Equal(6, decision.K);
        Assert.True(decision.Changed);
    }

    [Fact]
    public void WithoutHysteresisTheBestKAlwaysWins()
    {
        var selector = new ClusterCountSelector(new ClusterCountOptions { SwitchMargin = 0 });
        Assert.Equal(3, selector.Select(Blobs(3, 10, 20, 0.5, 3), 30, 20).K);
        Assert.Equal(4, selector.Select(Blobs(4, 10, 20, 0.5, 4), 40, 20).K);
    }

    [Fact]
    public void SilhouetteWorkedExample()
    {
        float[] points = [0, 1, 10, 11];
        var distances = Silhouette.PairwiseDistances(points, 4, 1);
        var s = Silhouette.Score(distances, 4, [0, 0, 1, 1], 2);
        Assert.Equal(((9.5 / 10.5) + (8.5 / 9.5)) / 2, s, 5);
        Assert.True(Silhouette.Score(distances, 4, [0, 1, 0, 1], 2) < 0);
    }

    [Fact]
    public void KMeansIsDeterministicAndRejectsBadK()
    {
        var points = Blobs(4, 10, 16, 1.0, 7);
        var a = KMeans.Fit(points, 40, 16, 4, seed: 3);
        var b = KMeans.Fit(points, 40, 16, 4, seed: 3);
        Assert.Equal(a.Centres, b.Centres);
        Assert.Equal(a.Assignments, b.Assignments);
        Assert.Throws<ArgumentOutOfRangeException>(() => KMeans.Fit(points, 40, 16, 41));
        Assert.Throws<ArgumentException>(() => KMeans.Fit(points, 41, 16, 2));
    }
}
