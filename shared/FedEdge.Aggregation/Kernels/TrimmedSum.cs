using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// Coordinate-wise trimmed mean without sorting: one pass over the rows of a column block, SIMD across
/// coordinates. Per lane it keeps the b largest values seen (set T) and the b smallest of those that left T (set B)
/// with compare-exchange chains; what leaves B is neither among the final b largest nor the final b smallest, so
/// it is summed directly. The sum is therefore exactly the multiset of sorted positions [b, n−b−1] (ties included),
/// with no cancellation against outliers; ~4b min/max per row per vector.
/// </summary>
internal static class TrimmedSum
{
    /// <summary>Floats of per-block state ((2b + 1) × width): 24 KB, so it stays in L1 while the rows stream.</summary>
    private const int StateBudget = 6144;

    public static void Mean(UpdateBatch batch, int b, Span<float> result)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Mean<Vector512<float>, V512>(batch, b, result);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Mean<Vector256<float>, V256>(batch, b, result);
        }
        else
        {
            Mean<Vector<float>, VNum>(batch, b, result);
        }
    }

    private static unsafe void Mean<TV, TOps>(UpdateBatch batch, int b, Span<float> result)
        where TV : struct
        where TOps : struct, IOps<TV>
    {
        int n = batch.Count, d = batch.Dimension;
        if (n <= 2 * b)
        {
            throw new ArgumentException("Trimmed mean needs n > 2b.");
        }

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
    }

    private readonly struct V512 : IOps<Vector512<float>>
    {
        public static int Count => Vector512<float>.Count;

        public static Vector512<float> Load(ref float source) => Vector512.LoadUnsafe(ref source);

        public static void Store(Vector512<float> value, ref float destination) => value.StoreUnsafe(ref destination);

        public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);

        public static Vector512<float> Min(Vector512<float> a, Vector512<float> b) => Vector512.MinNative(a, b);

        public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    }

    private readonly struct V256 : IOps<Vector256<float>>
    {
        public static int Count => Vector256<float>.Count;

        public static Vector256<float> Load(ref float source) => Vector256.LoadUnsafe(ref source);

        public static void Store(Vector256<float> value, ref float destination) => value.StoreUnsafe(ref destination);

        public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);

        public static Vector256<float> Min(Vector256<float> a, Vector256<float> b) => Vector256.MinNative(a, b);

        public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    }

    private readonly struct VNum : IOps<Vector<float>>
    {
        public static int Count => Vector<float>.Count;

        public static Vector<float> Load(ref float source) => Vector.LoadUnsafe(ref source);

        public static void Store(Vector<float> value, ref float destination) => value.StoreUnsafe(ref destination);

        public static Vector<float> Max(Vector<float> a, Vector<float> b) => Vector.MaxNative(a, b);

        public static Vector<float> Min(Vector<float> a, Vector<float> b) => Vector.MinNative(a, b);

        public static Vector<float> Add(Vector<float> a, Vector<float> b) => a + b;
    }
}
