using CsCheck;

namespace FedEdge.Aggregation.Tests;

/// <summary>Generators and reference computations shared by the tests.</summary>
internal static class TestData
{
    /// <summary>An n×d batch with coordinates in [−1, 1].</summary>
    public static Gen<(int N, int D, float[] Data)> Batch(int minN, int maxN, int maxD) =>
        from n in Gen.Int[minN, maxN]
        from d in Gen.Int[1, maxD]
        from data in Gen.Float[-1f, 1f].Array[n * d]
        select (n, d, data);

    public static float[] Aggregate(IAggregationRule rule, float[] data, int n, int d, float[]? weights = null)
    {
        var result = new float[d];
        rule.Aggregate(new UpdateBatch(data, n, d, weights ?? default(ReadOnlyMemory<float>)), result);
        return result;
    }

    /// <summary>Rows permuted by <paramref name="order"/>.</summary>
    public static float[] Permute(float[] data, int d, int[] order)
    {
        var result = new float[data.Length];
        for (int i = 0; i < order.Length; i++)
        {
            Array.Copy(data, order[i] * d, result, i * d, d);
        }

        return result;
    }

    public static float[] Column(float[] data, int n, int d, int j)
    {
        var column = new float[n];
        for (int i = 0; i < n; i++)
        {
            column[i] = data[(i * d) + j];
        }

        return column;
    }

    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int j = 0; j < expected.Length; j++)
        {
            double scale = Math.Max(1.0, Math.Abs(expected[j]));
            Assert.True(Math.Abs(expected[j] - actual[j]) <= tolerance * scale,
                $"coordinate {j}: expected {expected[j]}, got {actual[j]}");
        }
    }
}
