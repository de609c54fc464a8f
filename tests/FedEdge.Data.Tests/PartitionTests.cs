namespace FedEdge.Data.Tests;

public sealed class PartitionTests
{
    // 10 classes × 600 samples, interleaved (label = i mod 10), like a small balanced data set.
    private static readonly long[] Labels = Enumerable.Range(0, 6000).Select(i => (long)(i % 10)).ToArray();

    public static TheoryData<string> Specs => ["iid", "dirichlet:0.5", "dirichlet:0.1", "shards:2", "shards:3"];

    [Theory]
    [MemberData(nameof(Specs))]
    public void DevicesAreDisjointAndNonEmpty(string spec)
    {
        var parts = Partition.Apply(spec, Labels, 20, seed: 1);
        Assert.Equal(20, parts.Length);
        Assert.All(parts, p => Assert.NotEmpty(p));
        var all = parts.SelectMany(p => p).ToArray();
        Assert.Equal(all.Length, all.Distinct().Count());
        Assert.All(all, i => Assert.InRange(i, 0, Labels.Length - 1));
    }

    [Theory]
    [InlineData("iid")]
    [InlineData("dirichlet:0.5")]
    [InlineData("shards:2")]
    public void EverySampleIsAssignedWhenDevicesCoverAllLabels(string spec)
    {
        var parts = Partition.Apply(spec, Labels, 10, seed: 7);
        Assert.Equal(Enumerable.Range(0, Labels.Length), parts.SelectMany(p => p).Order());
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void SameSeedSamePartitionOtherSeedOther(string spec)
    {
        var a = Partition.Apply(spec, Labels, 10, seed: 42);
        var b = Partition.Apply(spec, Labels, 10, seed: 42);
        var c = Partition.Apply(spec, Labels, 10, seed: 43);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void IidSplitsEvenlyWithBalancedClasses()
    {
        var parts = Partition.Iid(Labels, 7, seed: 3);
        // np.array_split: 6000 = 6·857 + 858, the first 6000 mod 7 = 1 part gets one more.
        Assert.Equal([858, 857, 857, 857, 857, 857, 857], parts.Select(p => p.Length));
        var histogram = Partition.ClassHistogram(parts, Labels, 10);
        Assert.All(histogram.SelectMany(h => h), c => Assert.InRange(c, 50, 120));
    }

    [Fact]
    public void DirichletSkewsLabelsMoreThanIidAndMoreForSmallerAlpha()
    {
        double iid = MeanTopClassShare(Partition.Iid(Labels, 10, seed: 5));
        double mild = MeanTopClassShare(Partition.Dirichlet(Labels, 10, 100, seed: 5));
        double skewed = MeanTopClassShare(Partition.Dirichlet(Labels, 10, 0.5, seed: 5));
        double extreme = MeanTopClassShare(Partition.Dirichlet(Labels, 10, 0.05, seed: 5));
        Assert.InRange(iid, 0.1, 0.15);
        Assert.InRange(mild, 0.1, 0.2);
        Assert.True(skewed > 0.3, $"Dirichlet(0.5) top-class share {skewed:F3} should exceed 0.3 (IID {iid:F3}).");
        Assert.True(extreme > skewed, $"Dirichlet(0.05) share {extreme:F3} should exceed Dirichlet(0.5) share {skewed:F3}.");
    }

    [Fact]
    public void DirichletRespectsTheMinimumSizeRule()
    {
        var parts = Partition.Dirichlet(Labels, 50, 0.1, seed: 11);
        Assert.All(parts, p => Assert.True(p.Length >= Partition.DirichletMinSize, $"device with {p.Length} samples"));
    }

    [Fact]
    public void DirichletGivesUpWithAClearErrorWhenTheMinimumIsImpossible()
    {
        // 20 samples among 20 devices need exactly one each (min size ⌊N/n⌋ = 1), but with α → 0 each class
        // goes to a single device, so no draw qualifies: the retry rule must stop with a clear error.
        long[] labels = [.. Enumerable.Repeat(0L, 10), .. Enumerable.Repeat(1L, 10)];
        var e = Assert.Throws<InvalidOperationException>(() => Partition.Dirichlet(labels, 20, 1e-3, seed: 1));
        Assert.Contains("fewer than 1 samples", e.Message);
        Assert.All(Partition.Dirichlet(labels, 2, 100, seed: 1), p => Assert.InRange(p.Length, 1, 19));
        Assert.Throws<ArgumentOutOfRangeException>(() => Partition.Dirichlet(labels, 21, 0.5, seed: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Partition.Dirichlet(labels, 2, 0, seed: 1));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    public void ShardsGiveEachDeviceExactlyKLabels(int k)
    {
        var parts = Partition.Shards(Labels, 25, k, seed: 9);
        var histogram = Partition.ClassHistogram(parts, Labels, 10);
        Assert.All(histogram, h => Assert.Equal(k, h.Count(c => c > 0)));
        // Device i always holds label i mod 10 (NIID-Bench's rule).
        for (int i = 0; i < 25; i++)
        {
            Assert.True(histogram[i][i % 10] > 0);
        }
    }

    [Fact]
    public void ShardsSplitEachLabelEvenlyAmongItsHolders()
    {
        var parts = Partition.Shards(Labels, 10, 2, seed: 2);
        var histogram = Partition.ClassHistogram(parts, Labels, 10);
        for (int label = 0; label < 10; label++)
        {
            var shares = histogram.Select(h => h[label]).Where(c => c > 0).ToArray();
            Assert.Equal(600, shares.Sum());
            Assert.True(shares.Max() - shares.Min() <= 1);
        }
    }

    [Theory]
    [InlineData("iid", PartitionKind.Iid, 0, 0)]
    [InlineData("Dirichlet:0.5", PartitionKind.Dirichlet, 0.5, 0)]
    [InlineData(" dirichlet:1e-1 ", PartitionKind.Dirichlet, 0.1, 0)]
    [InlineData("shards:2", PartitionKind.Shards, 0, 2)]
    public void ParsesSpecs(string text, PartitionKind kind, double alpha, int k)
    {
        var spec = PartitionSpec.Parse(text);
        Assert.Equal(new PartitionSpec(kind, alpha, k), spec);
        Assert.Equal(spec, PartitionSpec.Parse(spec.ToString()));
    }

    [Theory]
    [InlineData("")]
    [InlineData("iid:3")]
    [InlineData("dirichlet")]
    [InlineData("dirichlet:-1")]
    [InlineData("dirichlet:abc")]
    [InlineData("shards:0")]
    [InlineData("shards:1.5")]
    [InlineData("noniid")]
    public void RejectsBadSpecs(string text)
    {
        var e = Assert.Throws<FormatException>(() => PartitionSpec.Parse(text));
        Assert.Contains("dirichlet:ALPHA", e.Message);
    }

    private static double MeanTopClassShare(int[][] parts) =>
        Partition.ClassHistogram(parts, Labels, 10).Average(h => (double)h.Max() / h.Sum());
}
