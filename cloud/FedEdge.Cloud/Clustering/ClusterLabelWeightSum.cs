using FedEdge.Drift;
using FedEdge.Protocol.Messages;

namespace FedEdge.Cloud.Clustering;

/// <summary>
/// A cluster model's P_c(y) from the updates it aggregates (FedRC as in FedDAA's code, arXiv 2506.21054; algorithms.md
/// §6): each update's drift statistics carry the device's cluster × label weights Σ_i w_ic·1[y_i = r]; the sum of the
/// rows for cluster c over the version's updates (declines included: a device's weights for c are small, not zero),
/// normalised, is the P_c(y) announced with the version. Rows of another R than the first one taken are ignored (the
/// directory already refuses such statistics). Not thread-safe (one grain).
/// </summary>
public sealed class ClusterLabelWeightSum
{
    private double[]? _sum;

    /// <summary>Adds the row of <paramref name="cluster"/> from a verified envelope's drift statistics (nothing when absent).</summary>
    public void Add(ReadOnlySpan<byte> envelopeBytes, int cluster)
    {
        if (ClusterDeclines.TryParse(envelopeBytes) is not { Drift: { } drift }) return;
        Add(drift, cluster);
    }

    /// <summary>Adds the row of <paramref name="cluster"/> of <paramref name="drift"/> (nothing when it lists no such row).</summary>
    public void Add(DriftStatistics drift, int cluster)
    {
        ArgumentNullException.ThrowIfNull(drift);
        var labels = drift.LabelCount;
        var row = drift.Clusters.IndexOf(cluster);
        if (row < 0 || labels <= 0 || drift.ClusterLabelWeights.Count != drift.Clusters.Count * labels) return;
        _sum ??= new double[labels];
        if (_sum.Length != labels) return;
        for (var r = 0; r < labels; r++)
        {
            var w = drift.ClusterLabelWeights[row * labels + r];
            if (float.IsFinite(w) && w > 0) _sum[r] += w;
        }
    }

    /// <summary>
    /// P_c(y) of what was added since the last call, then starts over; null when nothing with positive weight was added
    /// (the caller keeps the distribution it had).
    /// </summary>
    public float[]? TakeDistribution()
    {
        var sum = _sum;
        _sum = null;
        if (sum is null) return null;
        var histogram = sum.Select(w => (float)w).ToArray();
        if (!(histogram.Sum() > 0)) return null;
        return SoftClusterAssignment.LabelDistributions(histogram, 1, histogram.Length);
    }
}
