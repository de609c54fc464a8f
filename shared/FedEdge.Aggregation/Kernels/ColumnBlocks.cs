namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// Splits the d coordinates into contiguous blocks and runs them on all cores. Coordinate-wise work is independent
/// per column, and a block of all n rows (n × width floats) stays in L2 while a kernel passes over it several times.
/// </summary>
internal static class ColumnBlocks
{
    /// <summary>Below this many floats of input the work runs on the calling thread (scheduling costs more).</summary>
    private const long SequentialThreshold = 1 << 16;

    public static void For(int dimension, int width, long inputFloats, Action<int, int> body)
    {
        int blocks = (dimension + width - 1) / width;
        if (blocks == 1 || inputFloats < SequentialThreshold)
        {
            for (int b = 0; b < blocks; b++)
            {
                int start = b * width;
                body(start, Math.Min(width, dimension - start));
            }

            return;
        }

        Parallel.For(0, blocks, b =>
        {
            int start = b * width;
            body(start, Math.Min(width, dimension - start));
        });
    }

    /// <summary>
    /// Column blocks that each produce a partial sum of <paramref name="length"/> doubles (e.g. squared distances
    /// over the block); the partials are summed into <paramref name="totals"/>.
    /// </summary>
    public static void ForPartialSums(int dimension, int width, long inputFloats, int length, double[] totals,
        Action<int, int, double[]> body)
    {
        Array.Clear(totals);
        int blocks = (dimension + width - 1) / width;
        if (blocks == 1 || inputFloats < SequentialThreshold)
        {
            for (int b = 0; b < blocks; b++)
            {
                int start = b * width;
                body(start, Math.Min(width, dimension - start), totals);
            }

            return;
        }

        var gate = new object();
        Parallel.For(0, blocks, () => new double[length], (b, _, partial) =>
        {
            int start = b * width;
            body(start, Math.Min(width, dimension - start), partial);
            return partial;
        }, partial =>
        {
            lock (gate)
            {
                for (int i = 0; i < partial.Length; i++)
                {
                    totals[i] += partial[i];
                }
            }
        });
    }

    /// <summary>
    /// Copies columns [start, start + len) of all n rows into a contiguous n×len tile. The copy reads one row
    /// segment after the other (a single sequential stream the prefetchers follow) instead of interleaving n
    /// streams 4·d bytes apart, which would be bound by memory latency; the kernels then work from L2.
    /// </summary>
    public static void LoadTile(ReadOnlySpan<float> rows, int n, int d, int start, int len, Span<float> tile)
    {
        for (int i = 0; i < n; i++)
        {
            rows.Slice((i * d) + start, len).CopyTo(tile.Slice(i * len, len));
        }
    }
}
