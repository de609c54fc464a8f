using System.Numerics.Tensors;

namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// out_k = Σ_i C[k, i]·Δ_i for a small m×n coefficient matrix C: the one kernel behind the weighted mean,
/// Multi-Krum's average, bucket means and nearest-neighbour mixing. Column-blocked so that each block of the
/// input is read from memory once for all m outputs; zero coefficients skip the row.
/// </summary>
internal static class RowCombination
{
    /// <summary>Floats of accumulators per block (m outputs × width): 256 KB, so they stay in L2 while the rows stream.</summary>
    private const int AccumulatorBudget = 1 << 16;

    /// <param name="coefficients">Row-major m×n.</param>
    /// <param name="output">Row-major m×d.</param>
    public static unsafe void Combine(UpdateBatch batch, ReadOnlySpan<double> coefficients, Span<float> output)
    {
        int n = batch.Count, d = batch.Dimension;
        int m = coefficients.Length / n;
        if (m * n != coefficients.Length || (long)m * d != output.Length)
        {
            throw new ArgumentException("Coefficient matrix and output shapes do not match the batch.");
        }

        var c = new float[coefficients.Length];
        for (int i = 0; i < c.Length; i++)
        {
            c[i] = (float)coefficients[i];
        }

        // Wide blocks keep each row segment a long sequential read (the prefetchers track few streams at once).
        int width = Math.Clamp(AccumulatorBudget / m, 2048, 32768);
        var data = batch.Data;
        fixed (float* outPtr = output)
        {
            nint o = (nint)outPtr;
            ColumnBlocks.For(d, width, (long)n * d, (start, len) =>
            {
                var rows = data.Span;
                for (int k = 0; k < m; k++)
                {
                    var acc = new Span<float>((float*)o + ((long)k * d) + start, len);
                    acc.Clear();
                    for (int i = 0; i < n; i++)
                    {
                        float w = c[(k * n) + i];
                        if (w != 0f)
                        {
                            TensorPrimitives.MultiplyAdd(rows.Slice((i * d) + start, len), w, acc, acc);
                        }
                    }
                }
            });
        }
    }
}
