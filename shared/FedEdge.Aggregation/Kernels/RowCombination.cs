using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// out_k = Σ_i C[k, i]·Δ_i for a small m×n coefficient matrix C: the one kernel behind the weighted mean,
/// Multi-Krum's average, bucket means and nearest-neighbour mixing. Column-blocked so that each block of the
/// input is read from memory once for all m outputs; zero coefficients skip the row.
/// </summary>
internal static class RowCombination
{
    /// <summary>Floats of accumulators per block (m outputs × width) before the width is clamped to [2048, 4096].</summary>
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

        // With several outputs, narrow blocks keep each accumulator segment in L1 while up to 4 rows at a time are
        // folded into it, and the n row segments of a block stay in L2 across the m passes.
        int width = m == 1 ? SingleOutputWidth(d) : Math.Clamp(AccumulatorBudget / m, 2048, 4096);
        var data = batch.Data;
        fixed (float* outPtr = output)
        {
            nint o = (nint)outPtr;
            ColumnBlocks.For(d, width, (long)n * d, (start, len) =>
            {
                ref float rows = ref MemoryMarshal.GetReference(data.Span);
                Span<int> live = n <= 256 ? stackalloc int[n] : new int[n];
                Span<float> weights = n <= 256 ? stackalloc float[n] : new float[n];
                for (int k = 0; k < m; k++)
                {
                    int count = 0;
                    for (int i = 0; i < n; i++)
                    {
                        float w = c[(k * n) + i];
                        if (w != 0f)
                        {
                            live[count] = i;
                            weights[count++] = w;
                        }
                    }

                    ref float acc = ref Unsafe.AsRef<float>((float*)o + ((long)k * d) + start);
                    if (count == 0)
                    {
                        new Span<float>((float*)o + ((long)k * d) + start, len).Clear();
                        continue;
                    }

                    int p = 0;
                    for (; p + 4 <= count; p += 4)
                    {
                        Fold4(ref acc, len, first: p == 0,
                            ref Unsafe.Add(ref rows, (nint)(((long)live[p] * d) + start)), weights[p],
                            ref Unsafe.Add(ref rows, (nint)(((long)live[p + 1] * d) + start)), weights[p + 1],
                            ref Unsafe.Add(ref rows, (nint)(((long)live[p + 2] * d) + start)), weights[p + 2],
                            ref Unsafe.Add(ref rows, (nint)(((long)live[p + 3] * d) + start)), weights[p + 3]);
                    }

                    for (; p < count; p++)
                    {
                        Fold1(ref acc, len, first: p == 0, ref Unsafe.Add(ref rows, (nint)(((long)live[p] * d) + start)), weights[p]);
                    }
                }
            });
        }
    }

    /// <summary>
    /// Block width for one output (the mean, Multi-Krum): no row segment is read twice, so the block only has to keep
    /// its accumulator in L2; long row segments let the prefetchers run (4096-column blocks cost ~1.5× the CPU time
    /// of 65536-column ones in `fededge bench aggregate`). At least 4 blocks per core keep the cores balanced.
    /// </summary>
    private static int SingleOutputWidth(int d)
    {
        int perCore = (d + (4 * Environment.ProcessorCount) - 1) / (4 * Environment.ProcessorCount);
        return Math.Clamp((perCore + 1023) / 1024 * 1024, 4096, 1 << 16);
    }

    /// <summary>acc = (first ? 0 : acc) + w0·r0 + w1·r1 + w2·r2 + w3·r3 over len floats: one read and one write of
    /// the accumulator per 4 rows.</summary>
    private static void Fold4(ref float acc, int len, bool first,
        ref float r0, float w0, ref float r1, float w1, ref float r2, float w2, ref float r3, float w3)
    {
        int c = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var v0 = Vector512.Create(w0);
            var v1 = Vector512.Create(w1);
            var v2 = Vector512.Create(w2);
            var v3 = Vector512.Create(w3);
            for (; c + Vector512<float>.Count <= len; c += Vector512<float>.Count)
            {
                var a = Vector512.LoadUnsafe(ref r0, (nuint)c) * v0;
                var b = Vector512.LoadUnsafe(ref r1, (nuint)c) * v1;
                a += Vector512.LoadUnsafe(ref r2, (nuint)c) * v2;
                b += Vector512.LoadUnsafe(ref r3, (nuint)c) * v3;
                if (!first)
                {
                    a += Vector512.LoadUnsafe(ref acc, (nuint)c);
                }

                (a + b).StoreUnsafe(ref acc, (nuint)c);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var v0 = Vector256.Create(w0);
            var v1 = Vector256.Create(w1);
            var v2 = Vector256.Create(w2);
            var v3 = Vector256.Create(w3);
            for (; c + Vector256<float>.Count <= len; c += Vector256<float>.Count)
            {
                var a = Vector256.LoadUnsafe(ref r0, (nuint)c) * v0;
                var b = Vector256.LoadUnsafe(ref r1, (nuint)c) * v1;
                a += Vector256.LoadUnsafe(ref r2, (nuint)c) * v2;
                b += Vector256.LoadUnsafe(ref r3, (nuint)c) * v3;
                if (!first)
                {
                    a += Vector256.LoadUnsafe(ref acc, (nuint)c);
                }

                (a + b).StoreUnsafe(ref acc, (nuint)c);
            }
        }
        else if (Vector.IsHardwareAccelerated)
        {
            var v0 = new Vector<float>(w0);
            var v1 = new Vector<float>(w1);
            var v2 = new Vector<float>(w2);
            var v3 = new Vector<float>(w3);
            for (; c + Vector<float>.Count <= len; c += Vector<float>.Count)
            {
                var a = Vector.LoadUnsafe(ref r0, (nuint)c) * v0;
                var b = Vector.LoadUnsafe(ref r1, (nuint)c) * v1;
                a += Vector.LoadUnsafe(ref r2, (nuint)c) * v2;
                b += Vector.LoadUnsafe(ref r3, (nuint)c) * v3;
                if (!first)
                {
                    a += Vector.LoadUnsafe(ref acc, (nuint)c);
                }

                (a + b).StoreUnsafe(ref acc, (nuint)c);
            }
        }

        for (; c < len; c++)
        {
            float a = (Unsafe.Add(ref r0, c) * w0) + (Unsafe.Add(ref r2, c) * w2);
            float b = (Unsafe.Add(ref r1, c) * w1) + (Unsafe.Add(ref r3, c) * w3);
            Unsafe.Add(ref acc, c) = (first ? 0f : Unsafe.Add(ref acc, c)) + a + b;
        }
    }

    private static void Fold1(ref float acc, int len, bool first, ref float row, float w)
    {
        var a = MemoryMarshal.CreateSpan(ref acc, len);
        var r = MemoryMarshal.CreateReadOnlySpan(ref row, len);
        if (first)
        {
            TensorPrimitives.Multiply(r, w, a);
        }
        else
        {
            TensorPrimitives.MultiplyAdd(r, w, a, a);
        }
    }
}
