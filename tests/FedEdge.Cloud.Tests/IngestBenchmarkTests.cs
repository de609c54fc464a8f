using FedEdge.Cloud.Benchmarks;

namespace FedEdge.Cloud.Tests;

/// <summary>`fededge bench e2e`'s ingest measurement, run small: every window's updates are accepted and each pair is reported.</summary>
[Collection(ServerCollection.Name)]
public sealed class IngestBenchmarkTests
{
    [Fact]
    public async Task Alternating_windows_ingest_every_update_and_report_the_median_pair()
    {
        const int d = 1_000;
        var result = await IngestBenchmark.RunAsync(devices: 3, updatesPerDevice: 4, dimension: d, synchronousFull: false,
            bufferSize: 5, warmupPerDevice: 1, repeats: 3);

        Assert.Equal(3, result.Pairs.Count);
        Assert.Equal(3 * 4, result.UpdatesPerWindow);
        Assert.All(result.Pairs, p => Assert.True(p.CeilingPerSecond > 0 && p.IngestPerSecond > 0 && p.IngestCpuMs > 0));
        var fractions = result.Pairs.Select(p => p.Fraction).Order().ToArray();
        Assert.Equal(fractions[1], result.Fraction);
        Assert.InRange(result.FrameBytes, d / 8, d / 8 + 300);
    }
}
