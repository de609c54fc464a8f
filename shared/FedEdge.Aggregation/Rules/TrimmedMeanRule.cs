using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Coordinate-wise trimmed mean (Yin et al., ICML 2018): per coordinate drop the b largest and b smallest values
/// and average the remaining n − 2b, with b = f. Weights are ignored. Needs n &gt; 2f; tolerates f Byzantine
/// updates per coordinate.
/// <example>
/// f = 1, column values 1, 2, 3, 4, 100: drop 1 and 100, A = (2 + 3 + 4) / 3 = 3.
/// </example>
/// </summary>
public sealed class TrimmedMeanRule : AggregationRule
{
    public TrimmedMeanRule(int f)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        F = f;
    }

    /// <summary>b = f, the values dropped at each end of every coordinate.</summary>
    public int F { get; }

    public override string Name => "trimmed-mean";

    protected override void CheckCount(int count) => RequireHonestMajority(count, F);

    protected override void AggregateCore(UpdateBatch updates, Span<float> result) =>
        TrimmedSum.Mean(updates, F, result);
}
