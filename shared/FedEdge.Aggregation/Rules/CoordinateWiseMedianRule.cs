using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
/// ICML 2018): A[j] = median_i Δ_i[j]; for even n the mean of the two middle values (as NumPy). Weights are
/// ignored. Tolerates f &lt; n/2: each coordinate stays inside the range of the honest values.
/// Kernel: a vertical SIMD sorting network per group of columns, pruned to the middle positions.
/// <example>
/// Rows [1, 10], [2, 30], [100, 20]: A = [median(1, 2, 100), median(10, 30, 20)] = [2, 20].
/// </example>
/// </summary>
public sealed class CoordinateWiseMedianRule : AggregationRule
{
    public override string Name => "median";

    protected override void AggregateCore(UpdateBatch updates, Span<float> result)
    {
        int n = updates.Count;
        ColumnOrderStatistics.MeanOfSortedRange(updates, (n - 1) / 2, n / 2, result);
    }
}
