namespace FedEdge.Cloud.Benchmarks;

/// <summary>Summaries of repeated benchmark measurements.</summary>
internal static class BenchmarkStatistics
{
    /// <summary>The median (mean of the middle two for an even count); NaN for no values.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN
            : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2]
            : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
