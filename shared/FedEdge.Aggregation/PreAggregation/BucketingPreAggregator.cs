using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.PreAggregation;

/// <summary>
/// Bucketing (Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing",
/// ICLR 2022): shuffle the n updates with a seeded permutation, split them into ⌈n/s⌉ buckets of s (the last may be
/// smaller) and pass the bucket means to the robust rule. Averaging reduces heterogeneity between honest updates;
/// at most f buckets hold a Byzantine update, so the rule downstream should still be configured with f and needs
/// ⌈n/s⌉ &gt; 2f (s = 2 by default). Deterministic for a given seed and call sequence.
/// <example>
/// s = 2, n = 4, permutation (2, 0, 3, 1): buckets {Δ₂, Δ₀} and {Δ₃, Δ₁}, output rows (Δ₂+Δ₀)/2, (Δ₃+Δ₁)/2.
/// </example>
/// </summary>
public sealed class BucketingPreAggregator : IPreAggregator
{
    private readonly Random _random;

    public BucketingPreAggregator(int bucketSize = 2, int seed = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bucketSize);
        BucketSize = bucketSize;
        _random = new Random(seed);
    }

    /// <summary>s, updates per bucket.</summary>
    public int BucketSize { get; }

    public string Name => "bucketing";

    public UpdateBatch Apply(UpdateBatch updates)
    {
        ArgumentNullException.ThrowIfNull(updates);
        updates.EnsureValid();
        int n = updates.Count;
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            order[i] = i;
        }

        _random.Shuffle(order);
        int buckets = (n + BucketSize - 1) / BucketSize;
        var coefficients = new double[buckets * n];
        for (int b = 0; b < buckets; b++)
        {
            int size = Math.Min(BucketSize, n - (b * BucketSize));
            for (int k = 0; k < size; k++)
            {
                coefficients[(b * n) + order[(b * BucketSize) + k]] = 1.0 / size;
            }
        }

        var output = new float[(long)buckets * updates.Dimension];
        RowCombination.Combine(updates, coefficients, output);
        return new UpdateBatch(output, buckets, updates.Dimension);
    }
}
