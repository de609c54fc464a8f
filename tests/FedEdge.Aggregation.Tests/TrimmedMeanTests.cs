using FedEdge.Aggregation.Rules;

namespace FedEdge.Aggregation.Tests;

/// <summary>
/// The trimmed-mean kernel (sets kept in registers for b ≤ 8, in L1 above) against a naive sort of every column,
/// over the b range edges (b = 0, 2b = n − 1) and dimensions that span several parallel column blocks.
/// </summary>
public class TrimmedMeanTests
{
    public static TheoryData<int, int> Shapes => new()
    {
        { 1, 0 }, { 2, 0 }, { 3, 1 }, { 5, 2 }, { 7, 3 }, { 10, 1 }, { 17, 8 }, { 19, 9 }, { 30, 9 }, { 50, 5 },
        { 50, 0 }, { 51, 25 }, { 64, 8 }, { 40, 13 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesASortPerColumn(int n, int b)
    {
        // Ragged d across several 1024-column tiles, and large enough (n·d ≥ 2^16) to run on all cores.
        int d = Math.Max(3_001, (1 << 16) / n + 37);
        var random = new Random((n * 100) + b);
        var data = new float[n * d];
        for (int k = 0; k < data.Length; k++)
        {
            data[k] = (float)((random.NextDouble() * 2) - 1);
        }

        var trimmed = TestData.Aggregate(new TrimmedMeanRule(b), data, n, d);
        for (int j = 0; j < d; j++)
        {
            Assert.Equal(SortedMean(TestData.Column(data, n, d, j), b), trimmed[j], 1e-5);
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SumsExactlyTheMiddleValuesWithTiesAndOutliers(int n, int b)
    {
        // Small integers (sums exact in float32, many ties) plus ±1e9 outliers in up to b rows per column:
        // any value taken from the wrong rank, or cancellation against an outlier, shows as an error ≥ 1/(n−2b).
        const int d = 2_053;
        var random = new Random((n * 31) + b);
        var data = new float[n * d];
        for (int k = 0; k < data.Length; k++)
        {
            data[k] = random.Next(-3, 4);
        }

        for (int j = 0; j < d; j++)
        {
            int outliers = random.Next(b + 1);
            for (int o = 0; o < outliers; o++)
            {
                data[(random.Next(n) * d) + j] = random.Next(2) == 0 ? 1e9f : -1e9f;
            }
        }

        var trimmed = TestData.Aggregate(new TrimmedMeanRule(b), data, n, d);
        for (int j = 0; j < d; j++)
        {
            double expected = SortedMean(TestData.Column(data, n, d, j), b);
            Assert.True(Math.Abs(expected - trimmed[j]) <= 1e-6 * Math.Max(1, Math.Abs(expected)),
                $"n = {n}, b = {b}, column {j}: expected {expected}, got {trimmed[j]}");
        }
    }

    private static double SortedMean(float[] column, int b)
    {
        Array.Sort(column);
        return column[b..(column.Length - b)].Average(v => (double)v);
    }
}
