using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// Coordinate-wise trimmed mean without sorting: one pass over the rows, SIMD across coordinates. Per lane it keeps
/// the b largest values seen (set T) and the b smallest of those that left T (set B) with compare-exchange chains;
/// what leaves B is neither among the final b largest nor the final b smallest, so it is summed directly. The sum is
/// therefore exactly the multiset of sorted positions [b, n−b−1] (ties included), with no cancellation against
/// outliers; 2b compare-exchanges (4b min/max) per row per vector.
/// For b ≤ <see cref="RegisterCapacity"/> both sets live in vector registers while one vector of columns walks down
/// all n rows of an L2-resident tile; larger b keeps the sets of a column block in L1 instead.
/// </summary>
internal static class TrimmedSum
{
    /// <summary>
    /// Largest b whose sets (2b vectors, plus the sum and the value in flight) fit 32 vector registers (AVX-512,
    /// NEON); with AVX2's 16 the largest b spill some slots to L1, which is slower but still correct.
    /// </summary>
    private const int RegisterCapacity = 8;

    /// <summary>Columns per tile: n × 1024 floats (200 KB at n = 50) stay in L2 while every column walks the rows.</summary>
    private const int TileWidth = 1024;

    /// <summary>Floats of per-block state ((2b + 1) × width) for large b: 24 KB, so it stays in L1 while the rows stream.</summary>
    private const int StateBudget = 6144;

    public static void Mean(UpdateBatch batch, int b, Span<float> result)
    {
        if (batch.Count <= 2 * b)
        {
            throw new ArgumentException("Trimmed mean needs n > 2b.");
        }

        if (b == 0)
        {
            // Nothing trimmed: the plain mean.
            Span<double> uniform = batch.Count <= 256 ? stackalloc double[batch.Count] : new double[batch.Count];
            uniform.Fill(1.0 / batch.Count);
            RowCombination.Combine(batch, uniform, result);
        }
        else if (Vector512.IsHardwareAccelerated)
        {
            Dispatch<Vector512<float>, V512>(batch, b, result);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Dispatch<Vector256<float>, V256>(batch, b, result);
        }
        else
        {
            Dispatch<Vector<float>, VNum>(batch, b, result);
        }
    }

    private static void Dispatch<TV, TOps>(UpdateBatch batch, int b, Span<float> result)
        where TV : struct
        where TOps : struct, IOps<TV>
    {
        if (b <= RegisterCapacity)
        {
            MeanInRegisters<TV, TOps>(batch, b, result);
        }
        else
        {
            MeanInL1<TV, TOps>(batch, b, result);
        }
    }

    private static unsafe void MeanInRegisters<TV, TOps>(UpdateBatch batch, int b, Span<float> result)
        where TV : struct
        where TOps : struct, IOps<TV>
    {
        int n = batch.Count, d = batch.Dimension;
        int w = TOps.Count;
        float scale = 1f / (n - (2 * b));
        var data = batch.Data;
        fixed (float* r = result)
        {
            nint rp = (nint)r;
            ColumnBlocks.For(d, TileWidth, (long)n * d, (start, len) =>
            {
                // Rows padded to whole vectors (plus one, so that rows 4 KB apart do not alias in L1); the pad
                // columns are zero and their results are dropped.
                int stride = ((len + w - 1) / w * w) + w;
                var buffer = ArrayPool<float>.Shared.Rent(n * stride);
                var tile = buffer.AsSpan(0, n * stride);
                var rows = data.Span;
                for (int i = 0; i < n; i++)
                {
                    rows.Slice((i * d) + start, len).CopyTo(tile.Slice(i * stride, len));
                    tile.Slice((i * stride) + len, stride - len).Clear();
                }

                ref float tileRef = ref MemoryMarshal.GetArrayDataReference(buffer);
                ref float output = ref Unsafe.AsRef<float>((float*)rp + start);
                Span<float> tail = stackalloc float[w];
                for (int c = 0; c < len; c += w)
                {
                    var sum = TrimmedColumnSum<TV, TOps>(ref Unsafe.Add(ref tileRef, c), stride, n, b);
                    if (c + w <= len)
                    {
                        TOps.Store(TOps.Scale(sum, scale), ref Unsafe.Add(ref output, c));
                    }
                    else
                    {
                        TOps.Store(TOps.Scale(sum, scale), ref MemoryMarshal.GetReference(tail));
                        tail[..(len - c)].CopyTo(MemoryMarshal.CreateSpan(ref Unsafe.Add(ref output, c), len - c));
                    }
                }

                ArrayPool<float>.Shared.Return(buffer);
            });
        }
    }

    /// <summary>Σ of sorted positions [b, n−b−1] per lane of one vector of columns, rows <paramref name="stride"/> apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static TV TrimmedColumnSum<TV, TOps>(ref float column, int stride, int n, int b)
        where TV : struct
        where TOps : struct, IOps<TV>
    {
        // T starts at −∞ and B at +∞: while the first b rows fill T only −∞ leaves it (dropped), while the next b
        // fill B only +∞ leaves B (dropped); from row 2b on, what leaves B is a middle value.
        TV lo = TOps.Create(float.NegativeInfinity), hi = TOps.Create(float.PositiveInfinity);
        TV t0 = lo, t1 = lo, t2 = lo, t3 = lo, t4 = lo, t5 = lo, t6 = lo, t7 = lo;
        TV b0 = hi, b1 = hi, b2 = hi, b3 = hi, b4 = hi, b5 = hi, b6 = hi, b7 = hi;
        TV sum = TOps.Create(0f);
        int i = 0;
        for (; i < b; i++)
        {
            _ = Chain<TV, TOps>(TOps.Load(ref Unsafe.Add(ref column, (nint)i * stride)), b, true,
                ref t0, ref t1, ref t2, ref t3, ref t4, ref t5, ref t6, ref t7);
        }

        for (; i < 2 * b; i++)
        {
            var v = Chain<TV, TOps>(TOps.Load(ref Unsafe.Add(ref column, (nint)i * stride)), b, true,
                ref t0, ref t1, ref t2, ref t3, ref t4, ref t5, ref t6, ref t7);
            _ = Chain<TV, TOps>(v, b, false, ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7);
        }

        for (; i < n; i++)
        {
            var v = Chain<TV, TOps>(TOps.Load(ref Unsafe.Add(ref column, (nint)i * stride)), b, true,
                ref t0, ref t1, ref t2, ref t3, ref t4, ref t5, ref t6, ref t7);
            sum = TOps.Add(sum, Chain<TV, TOps>(v, b, false, ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7));
        }

        return sum;
    }

    /// <summary>
    /// Inserts v into the sorted set s0..s(b−1) (descending when keepLarger, else ascending) by a chain of
    /// compare-exchanges and returns the value that falls out of the end. The b checks are perfectly predicted.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Chain<TV, TOps>(TV v, int b, bool keepLarger,
        ref TV s0, ref TV s1, ref TV s2, ref TV s3, ref TV s4, ref TV s5, ref TV s6, ref TV s7)
        where TV : struct
        where TOps : struct, IOps<TV>
    {
        Exchange<TV, TOps>(ref s0, ref v, keepLarger);
        if (b > 1)
        {
            Exchange<TV, TOps>(ref s1, ref v, keepLarger);
            if (b > 2)
            {
                Exchange<TV, TOps>(ref s2, ref v, keepLarger);
                if (b > 3)
                {
                    Exchange<TV, TOps>(ref s3, ref v, keepLarger);
                    if (b > 4)
                    {
                        Exchange<TV, TOps>(ref s4, ref v, keepLarger);
                        if (b > 5)
                        {
                            Exchange<TV, TOps>(ref s5, ref v, keepLarger);
                            if (b > 6)
                            {
                                Exchange<TV, TOps>(ref s6, ref v, keepLarger);
                                if (b > 7)
                                {
                                    Exchange<TV, TOps>(ref s7, ref v, keepLarger);
                                }
                            }
                        }
                    }
                }
            }
        }

        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Exchange<TV, TOps>(ref TV slot, ref TV v, bool keepLarger)
        where TV : struct
        where TOps : struct, IOps<TV>
    {
        var t = slot;
        if (keepLarger)
        {
            slot = TOps.Max(t, v);
            v = TOps.Min(v, t);
        }
        else
        {
            slot = TOps.Min(t, v);
            v = TOps.Max(v, t);
        }
    }

    private static unsafe void MeanInL1<TV, TOps>(UpdateBatch batch, int b, Span<float> result)
        where TV : struct
        where TOps : struct, IOps<TV>
    {
        int n = batch.Count, d = batch.Dimension;
        int w = TOps.Count;
        int width = Math.Max(4 * w, StateBudget / ((2 * b) + 1) / 64 * 64);
        float scale = 1f / (n - (2 * b));
        var data = batch.Data;
        fixed (float* r = result)
        {
            nint rp = (nint)r;
            ColumnBlocks.For(d, width, (long)n * d, (start, len) =>
            {
                var buffer = ArrayPool<float>.Shared.Rent(((2 * b) + 1) * len);
                ref float state = ref MemoryArrayRef(buffer);
                ref float top = ref state;
                ref float bottom = ref Unsafe.Add(ref state, b * len);
                ref float sum = ref Unsafe.Add(ref state, 2 * b * len);
                ref float rows = ref MemoryMarshal.GetReference(data.Span);
                int vecLen = len - (len % w);

                for (int i = 0; i < n; i++)
                {
                    ref float row = ref Unsafe.Add(ref rows, (nint)(((long)i * d) + start));
                    if (i < b)
                    {
                        // The first b values fill T.
                        Unsafe.CopyBlockUnaligned(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref top, i * len)),
                            ref Unsafe.As<float, byte>(ref row), (uint)(len * sizeof(float)));
                        continue;
                    }

                    int phase = i < 2 * b ? 1 : (i == 2 * b ? 2 : 3);
                    int c = 0;
                    for (; c < vecLen; c += w)
                    {
                        var v = TOps.Load(ref Unsafe.Add(ref row, c));
                        for (int j = 0; j < b; j++)
                        {
                            ref float slot = ref Unsafe.Add(ref top, (j * len) + c);
                            var t = TOps.Load(ref slot);
                            TOps.Store(TOps.Max(t, v), ref slot);
                            v = TOps.Min(v, t);
                        }

                        if (phase == 1)
                        {
                            // Values leaving T fill B.
                            TOps.Store(v, ref Unsafe.Add(ref bottom, ((i - b) * len) + c));
                            continue;
                        }

                        for (int j = 0; j < b; j++)
                        {
                            ref float slot = ref Unsafe.Add(ref bottom, (j * len) + c);
                            var t = TOps.Load(ref slot);
                            TOps.Store(TOps.Min(t, v), ref slot);
                            v = TOps.Max(v, t);
                        }

                        ref float s = ref Unsafe.Add(ref sum, c);
                        TOps.Store(phase == 2 ? v : TOps.Add(TOps.Load(ref s), v), ref s);
                    }

                    for (; c < len; c++)
                    {
                        float v = Unsafe.Add(ref row, c);
                        for (int j = 0; j < b; j++)
                        {
                            ref float t = ref Unsafe.Add(ref top, (j * len) + c);
                            if (v > t)
                            {
                                (t, v) = (v, t);
                            }
                        }

                        if (phase == 1)
                        {
                            Unsafe.Add(ref bottom, ((i - b) * len) + c) = v;
                            continue;
                        }

                        for (int j = 0; j < b; j++)
                        {
                            ref float t = ref Unsafe.Add(ref bottom, (j * len) + c);
                            if (v < t)
                            {
                                (t, v) = (v, t);
                            }
                        }

                        ref float s = ref Unsafe.Add(ref sum, c);
                        s = phase == 2 ? v : s + v;
                    }
                }

                var output = new Span<float>((float*)rp + start, len);
                for (int c = 0; c < len; c++)
                {
                    output[c] = Unsafe.Add(ref sum, c) * scale;
                }

                ArrayPool<float>.Shared.Return(buffer);
            });
        }
    }

    private static ref float MemoryArrayRef(float[] array) => ref MemoryMarshal.GetArrayDataReference(array);

    // Max(t, v) and Min(v, t): on x86 maxps/minps return the second operand on equal (±0) inputs, so the two
    // results are always an exchange of the inputs (no value duplicated or lost); NaN is rejected upstream.
    private interface IOps<TV>
    {
        static abstract int Count { get; }

        static abstract TV Load(ref float source);

        static abstract void Store(TV value, ref float destination);

        static abstract TV Max(TV a, TV b);

        static abstract TV Min(TV a, TV b);

        static abstract TV Add(TV a, TV b);

        static abstract TV Create(float value);

        static abstract TV Scale(TV a, float factor);
    }

    private readonly struct V512 : IOps<Vector512<float>>
    {
        public static int Count => Vector512<float>.Count;

        public static Vector512<float> Load(ref float source) => Vector512.LoadUnsafe(ref source);

        public static void Store(Vector512<float> value, ref float destination) => value.StoreUnsafe(ref destination);

        public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);

        public static Vector512<float> Min(Vector512<float> a, Vector512<float> b) => Vector512.MinNative(a, b);

        public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

        public static Vector512<float> Create(float value) => Vector512.Create(value);

        public static Vector512<float> Scale(Vector512<float> a, float factor) => a * factor;
    }

    private readonly struct V256 : IOps<Vector256<float>>
    {
        public static int Count => Vector256<float>.Count;

        public static Vector256<float> Load(ref float source) => Vector256.LoadUnsafe(ref source);

        public static void Store(Vector256<float> value, ref float destination) => value.StoreUnsafe(ref destination);

        public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);

        public static Vector256<float> Min(Vector256<float> a, Vector256<float> b) => Vector256.MinNative(a, b);

        public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;

        public static Vector256<float> Create(float value) => Vector256.Create(value);

        public static Vector256<float> Scale(Vector256<float> a, float factor) => a * factor;
    }

    private readonly struct VNum : IOps<Vector<float>>
    {
        public static int Count => Vector<float>.Count;

        public static Vector<float> Load(ref float source) => Vector.LoadUnsafe(ref source);

        public static void Store(Vector<float> value, ref float destination) => value.StoreUnsafe(ref destination);

        public static Vector<float> Max(Vector<float> a, Vector<float> b) => Vector.MaxNative(a, b);

        public static Vector<float> Min(Vector<float> a, Vector<float> b) => Vector.MinNative(a, b);

        public static Vector<float> Add(Vector<float> a, Vector<float> b) => a + b;

        public static Vector<float> Create(float value) => new Vector<float>(value);

        public static Vector<float> Scale(Vector<float> a, float factor) => a * factor;
    }
}
