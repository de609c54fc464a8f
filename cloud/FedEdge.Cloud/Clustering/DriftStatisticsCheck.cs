using FedEdge.Cloud.Abstractions;
using FedEdge.Protocol.Messages;

namespace FedEdge.Cloud.Clustering;

/// <summary>
/// Checks the FedDAA drift statistics an update carries (<c>UpdateEnvelope.drift</c>) before the cloud keeps them:
/// shapes that agree (prototype R × D, previous prototype empty or R × D, histogram R, cluster × label weights one row
/// of R per listed cluster), sizes within bounds, finite values, non-negative counts and weights, distinct clusters.
/// A device's statistics steer the clustering of the whole fleet, so a malformed set is refused, never clipped.
/// </summary>
public static class DriftStatisticsCheck
{
    /// <summary>Largest prototype R × D kept per device (e.g. 100 labels × 100 outputs).</summary>
    public const int MaxPrototypeValues = 10_000;

    /// <summary>Largest number of clusters a device may report weights for.</summary>
    public const int MaxClusters = 64;

    public static bool TryRead(DriftStatistics drift, DateTimeOffset receivedAt, out DeviceDriftStatistics? statistics, out string? problem)
    {
        statistics = null;
        problem = Check(drift);
        if (problem is not null) return false;
        statistics = new DeviceDriftStatistics
        {
            WindowIndex = drift.WindowIndex,
            SampleCount = drift.SampleCount,
            LabelCount = drift.LabelCount,
            OutputDimension = drift.OutputDimension,
            Prototype = [.. drift.Prototype],
            LabelHistogram = [.. drift.LabelHistogram],
            ClusterLabelWeights = [.. drift.ClusterLabelWeights],
            Clusters = [.. drift.Clusters],
            AssignmentEpoch = drift.AssignmentEpoch,
            ReceivedAt = receivedAt,
        };
        return true;
    }

    private static string? Check(DriftStatistics d)
    {
        int r = d.LabelCount, o = d.OutputDimension;
        if (r < 1 || o < 1) return $"label_count {r} and output_dimension {o} must be ≥ 1";
        if ((long)r * o > MaxPrototypeValues) return $"prototype of {r} × {o} exceeds {MaxPrototypeValues} values";
        if (d.WindowIndex < 0 || d.SampleCount < 0 || d.AssignmentEpoch < 0)
            return $"window_index {d.WindowIndex}, sample_count {d.SampleCount} and assignment_epoch {d.AssignmentEpoch} must be ≥ 0";
        if (d.Prototype.Count != r * o) return $"prototype has {d.Prototype.Count} values, not {r} × {o}";
        if (d.PreviousPrototype.Count is not 0 && d.PreviousPrototype.Count != r * o)
            return $"previous_prototype has {d.PreviousPrototype.Count} values, not 0 or {r} × {o}";
        if (d.LabelHistogram.Count != r) return $"label_histogram has {d.LabelHistogram.Count} values, not {r}";
        if (d.Clusters.Count > MaxClusters) return $"{d.Clusters.Count} clusters listed (at most {MaxClusters})";
        if (d.ClusterLabelWeights.Count != d.Clusters.Count * r)
            return $"cluster_label_weights has {d.ClusterLabelWeights.Count} values, not {d.Clusters.Count} clusters × {r}";
        if (d.Clusters.Any(c => c < 0) || d.Clusters.Distinct().Count() != d.Clusters.Count) return "clusters must be distinct and ≥ 0";
        if (FirstBad(d.Prototype, allowNegative: true) is { } p) return $"prototype[{p}] is {d.Prototype[p]}";
        if (FirstBad(d.PreviousPrototype, allowNegative: true) is { } q) return $"previous_prototype[{q}] is {d.PreviousPrototype[q]}";
        if (FirstBad(d.LabelHistogram, allowNegative: false) is { } h) return $"label_histogram[{h}] is {d.LabelHistogram[h]}";
        if (FirstBad(d.ClusterLabelWeights, allowNegative: false) is { } w) return $"cluster_label_weights[{w}] is {d.ClusterLabelWeights[w]}";
        return null;
    }

    private static int? FirstBad(IReadOnlyList<float> values, bool allowNegative)
    {
        for (var i = 0; i < values.Count; i++)
            if (!float.IsFinite(values[i]) || (!allowNegative && values[i] < 0)) return i;
        return null;
    }
}
