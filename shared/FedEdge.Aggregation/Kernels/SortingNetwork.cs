using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// Batcher's odd–even merge sorting network for n inputs (Knuth, TAOCP 5.3.4), pruned to the comparators that
/// influence a chosen range of sorted positions. Applied "vertically": each input is a SIMD vector holding the
/// same row for Vector&lt;float&gt;.Count adjacent columns, so one comparator is one Min and one Max for that many
/// columns, branch-free, with no transposition (rows are read contiguously).
/// For n = 50 the full network has ~500 comparators, about 2·500/8 ≈ 125 vector ops per column with AVX2.
/// </summary>
internal sealed class SortingNetwork
{
    /// <summary>Length of the runs <see cref="SortRun16"/> sorts in registers.</summary>
    public const int RunLength = 16;

    private static readonly ConcurrentDictionary<(int, int, int, bool), SortingNetwork> Cache = new();
    private readonly int[] _pairs; // (lo, hi) interleaved

    private SortingNetwork(int size, int[] pairs, int presortedInputs)
    {
        Size = size;
        _pairs = pairs;
        PresortedInputs = presortedInputs;
    }

    public int Size { get; }

    /// <summary>
    /// Inputs [0, PresortedInputs) must arrive sorted in runs of <see cref="RunLength"/> (e.g. by
    /// <see cref="SortRun16"/>); the network then holds only the later merge stages for them.
    /// </summary>
    public int PresortedInputs { get; }

    public int ComparatorCount => _pairs.Length / 2;

    /// <summary>A network that leaves sorted positions [first, last] correct (the rest are a permutation).</summary>
    /// <param name="presortRuns">Leave the first stages of full runs of 16 to <see cref="SortRun16"/>.</param>
    public static SortingNetwork For(int size, int first, int last, bool presortRuns = false) =>
        Cache.GetOrAdd((size, first, last, presortRuns), key => Build(key.Item1, key.Item2, key.Item3, key.Item4));

    private static SortingNetwork Build(int n, int first, int last, bool presortRuns)
    {
        // Batcher's stages p < 16 only compare inside aligned blocks of 16, so for the full blocks they are
        // exactly a sort of each block, which SortRun16 does in registers.
        int presorted = presortRuns ? n / RunLength * RunLength : 0;
        var pairs = new List<(int Lo, int Hi)>();
        for (int p = 1; p < n; p <<= 1)
        {
            for (int k = p; k >= 1; k >>= 1)
            {
                for (int j = k % p; j + k < n; j += 2 * k)
                {
                    for (int i = 0; i < k && i + j + k < n; i++)
                    {
                        if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && !(p < RunLength && i + j + k < presorted))
                        {
                            pairs.Add((i + j, i + j + k));
                        }
                    }
                }
            }
        }

        // Backward pruning: a comparator matters only if one of its outputs feeds a wanted position.
        var needed = new bool[n];
        for (int i = first; i <= last; i++)
        {
            needed[i] = true;
        }

        var kept = new List<(int Lo, int Hi)>();
        for (int c = pairs.Count - 1; c >= 0; c--)
        {
            var (lo, hi) = pairs[c];
            if (needed[lo] || needed[hi])
            {
                needed[lo] = needed[hi] = true;
                kept.Add((lo, hi));
            }
        }

        kept.Reverse();
        var flat = new int[kept.Count * 2];
        for (int c = 0; c < kept.Count; c++)
        {
            flat[2 * c] = kept[c].Lo;
            flat[(2 * c) + 1] = kept[c].Hi;
        }

        return new SortingNetwork(n, flat, presorted);
    }

    /// <summary>
    /// Sorts <c>groups</c> independent groups at once: lanes[i·groups + g] is input i of group g. A lone comparator
    /// chain is bound by store-to-load forwarding latency; interleaved groups give the core independent work.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Sort<TVector, TLanes>(Span<TVector> lanes, int groups)
        where TVector : struct
        where TLanes : struct, ISimdLanes<TVector>
    {
        if (lanes.Length < groups * Size)
        {
            throw new ArgumentException("Too few lanes for the network.", nameof(lanes));
        }

        ref var l = ref MemoryMarshal.GetReference(lanes);
        ref int p = ref MemoryMarshal.GetArrayDataReference(_pairs);
        if (groups == 4)
        {
            for (int c = 0; c < _pairs.Length; c += 2)
            {
                ref var a = ref Unsafe.Add(ref l, Unsafe.Add(ref p, c) * 4);
                ref var b = ref Unsafe.Add(ref l, Unsafe.Add(ref p, c + 1) * 4);
                var x0 = a;
                var y0 = b;
                var x1 = Unsafe.Add(ref a, 1);
                var y1 = Unsafe.Add(ref b, 1);
                var x2 = Unsafe.Add(ref a, 2);
                var y2 = Unsafe.Add(ref b, 2);
                var x3 = Unsafe.Add(ref a, 3);
                var y3 = Unsafe.Add(ref b, 3);
                a = TLanes.Min(x0, y0);
                b = TLanes.Max(x0, y0);
                Unsafe.Add(ref a, 1) = TLanes.Min(x1, y1);
                Unsafe.Add(ref b, 1) = TLanes.Max(x1, y1);
                Unsafe.Add(ref a, 2) = TLanes.Min(x2, y2);
                Unsafe.Add(ref b, 2) = TLanes.Max(x2, y2);
                Unsafe.Add(ref a, 3) = TLanes.Min(x3, y3);
                Unsafe.Add(ref b, 3) = TLanes.Max(x3, y3);
            }

            return;
        }

        for (int c = 0; c < _pairs.Length; c += 2)
        {
            for (int g = 0; g < groups; g++)
            {
                ref var a = ref Unsafe.Add(ref l, (Unsafe.Add(ref p, c) * groups) + g);
                ref var b = ref Unsafe.Add(ref l, (Unsafe.Add(ref p, c + 1) * groups) + g);
                var x = a;
                var y = b;
                a = TLanes.Min(x, y);
                b = TLanes.Max(x, y);
            }
        }
    }

    /// <summary>
    /// Sorts 16 inputs held in registers (Batcher's 63-comparator network, straight-line so that the JIT keeps
    /// all 16 vectors in registers: worth it with AVX-512's 32). Reads rows [row0, row0 + 16) of the tile at
    /// <paramref name="column"/> and writes lanes[(row0 + k)·groups + group].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SortRun16<TVector, TLanes>(Span<float> tile, int width, int column, int row0, Span<TVector> lanes, int groups, int group)
        where TVector : struct
        where TLanes : struct, ISimdLanes<TVector>
    {
        ref float t = ref Unsafe.Add(ref MemoryMarshal.GetReference(tile), (row0 * width) + column);
        TVector v0 = TLanes.Load(ref t), v1 = TLanes.Load(ref Unsafe.Add(ref t, width)),
            v2 = TLanes.Load(ref Unsafe.Add(ref t, 2 * width)), v3 = TLanes.Load(ref Unsafe.Add(ref t, 3 * width)),
            v4 = TLanes.Load(ref Unsafe.Add(ref t, 4 * width)), v5 = TLanes.Load(ref Unsafe.Add(ref t, 5 * width)),
            v6 = TLanes.Load(ref Unsafe.Add(ref t, 6 * width)), v7 = TLanes.Load(ref Unsafe.Add(ref t, 7 * width)),
            v8 = TLanes.Load(ref Unsafe.Add(ref t, 8 * width)), v9 = TLanes.Load(ref Unsafe.Add(ref t, 9 * width)),
            v10 = TLanes.Load(ref Unsafe.Add(ref t, 10 * width)), v11 = TLanes.Load(ref Unsafe.Add(ref t, 11 * width)),
            v12 = TLanes.Load(ref Unsafe.Add(ref t, 12 * width)), v13 = TLanes.Load(ref Unsafe.Add(ref t, 13 * width)),
            v14 = TLanes.Load(ref Unsafe.Add(ref t, 14 * width)), v15 = TLanes.Load(ref Unsafe.Add(ref t, 15 * width));
        (v0, v1) = (TLanes.Min(v0, v1), TLanes.Max(v0, v1));
        (v2, v3) = (TLanes.Min(v2, v3), TLanes.Max(v2, v3));
        (v4, v5) = (TLanes.Min(v4, v5), TLanes.Max(v4, v5));
        (v6, v7) = (TLanes.Min(v6, v7), TLanes.Max(v6, v7));
        (v8, v9) = (TLanes.Min(v8, v9), TLanes.Max(v8, v9));
        (v10, v11) = (TLanes.Min(v10, v11), TLanes.Max(v10, v11));
        (v12, v13) = (TLanes.Min(v12, v13), TLanes.Max(v12, v13));
        (v14, v15) = (TLanes.Min(v14, v15), TLanes.Max(v14, v15));
        (v0, v2) = (TLanes.Min(v0, v2), TLanes.Max(v0, v2));
        (v1, v3) = (TLanes.Min(v1, v3), TLanes.Max(v1, v3));
        (v4, v6) = (TLanes.Min(v4, v6), TLanes.Max(v4, v6));
        (v5, v7) = (TLanes.Min(v5, v7), TLanes.Max(v5, v7));
        (v8, v10) = (TLanes.Min(v8, v10), TLanes.Max(v8, v10));
        (v9, v11) = (TLanes.Min(v9, v11), TLanes.Max(v9, v11));
        (v12, v14) = (TLanes.Min(v12, v14), TLanes.Max(v12, v14));
        (v13, v15) = (TLanes.Min(v13, v15), TLanes.Max(v13, v15));
        (v1, v2) = (TLanes.Min(v1, v2), TLanes.Max(v1, v2));
        (v5, v6) = (TLanes.Min(v5, v6), TLanes.Max(v5, v6));
        (v9, v10) = (TLanes.Min(v9, v10), TLanes.Max(v9, v10));
        (v13, v14) = (TLanes.Min(v13, v14), TLanes.Max(v13, v14));
        (v0, v4) = (TLanes.Min(v0, v4), TLanes.Max(v0, v4));
        (v1, v5) = (TLanes.Min(v1, v5), TLanes.Max(v1, v5));
        (v2, v6) = (TLanes.Min(v2, v6), TLanes.Max(v2, v6));
        (v3, v7) = (TLanes.Min(v3, v7), TLanes.Max(v3, v7));
        (v8, v12) = (TLanes.Min(v8, v12), TLanes.Max(v8, v12));
        (v9, v13) = (TLanes.Min(v9, v13), TLanes.Max(v9, v13));
        (v10, v14) = (TLanes.Min(v10, v14), TLanes.Max(v10, v14));
        (v11, v15) = (TLanes.Min(v11, v15), TLanes.Max(v11, v15));
        (v2, v4) = (TLanes.Min(v2, v4), TLanes.Max(v2, v4));
        (v3, v5) = (TLanes.Min(v3, v5), TLanes.Max(v3, v5));
        (v10, v12) = (TLanes.Min(v10, v12), TLanes.Max(v10, v12));
        (v11, v13) = (TLanes.Min(v11, v13), TLanes.Max(v11, v13));
        (v1, v2) = (TLanes.Min(v1, v2), TLanes.Max(v1, v2));
        (v3, v4) = (TLanes.Min(v3, v4), TLanes.Max(v3, v4));
        (v5, v6) = (TLanes.Min(v5, v6), TLanes.Max(v5, v6));
        (v9, v10) = (TLanes.Min(v9, v10), TLanes.Max(v9, v10));
        (v11, v12) = (TLanes.Min(v11, v12), TLanes.Max(v11, v12));
        (v13, v14) = (TLanes.Min(v13, v14), TLanes.Max(v13, v14));
        (v0, v8) = (TLanes.Min(v0, v8), TLanes.Max(v0, v8));
        (v1, v9) = (TLanes.Min(v1, v9), TLanes.Max(v1, v9));
        (v2, v10) = (TLanes.Min(v2, v10), TLanes.Max(v2, v10));
        (v3, v11) = (TLanes.Min(v3, v11), TLanes.Max(v3, v11));
        (v4, v12) = (TLanes.Min(v4, v12), TLanes.Max(v4, v12));
        (v5, v13) = (TLanes.Min(v5, v13), TLanes.Max(v5, v13));
        (v6, v14) = (TLanes.Min(v6, v14), TLanes.Max(v6, v14));
        (v7, v15) = (TLanes.Min(v7, v15), TLanes.Max(v7, v15));
        (v4, v8) = (TLanes.Min(v4, v8), TLanes.Max(v4, v8));
        (v5, v9) = (TLanes.Min(v5, v9), TLanes.Max(v5, v9));
        (v6, v10) = (TLanes.Min(v6, v10), TLanes.Max(v6, v10));
        (v7, v11) = (TLanes.Min(v7, v11), TLanes.Max(v7, v11));
        (v2, v4) = (TLanes.Min(v2, v4), TLanes.Max(v2, v4));
        (v3, v5) = (TLanes.Min(v3, v5), TLanes.Max(v3, v5));
        (v6, v8) = (TLanes.Min(v6, v8), TLanes.Max(v6, v8));
        (v7, v9) = (TLanes.Min(v7, v9), TLanes.Max(v7, v9));
        (v10, v12) = (TLanes.Min(v10, v12), TLanes.Max(v10, v12));
        (v11, v13) = (TLanes.Min(v11, v13), TLanes.Max(v11, v13));
        (v1, v2) = (TLanes.Min(v1, v2), TLanes.Max(v1, v2));
        (v3, v4) = (TLanes.Min(v3, v4), TLanes.Max(v3, v4));
        (v5, v6) = (TLanes.Min(v5, v6), TLanes.Max(v5, v6));
        (v7, v8) = (TLanes.Min(v7, v8), TLanes.Max(v7, v8));
        (v9, v10) = (TLanes.Min(v9, v10), TLanes.Max(v9, v10));
        (v11, v12) = (TLanes.Min(v11, v12), TLanes.Max(v11, v12));
        (v13, v14) = (TLanes.Min(v13, v14), TLanes.Max(v13, v14));
        ref var l = ref Unsafe.Add(ref MemoryMarshal.GetReference(lanes), (row0 * groups) + group);
        l = v0;
        Unsafe.Add(ref l, groups) = v1;
        Unsafe.Add(ref l, 2 * groups) = v2;
        Unsafe.Add(ref l, 3 * groups) = v3;
        Unsafe.Add(ref l, 4 * groups) = v4;
        Unsafe.Add(ref l, 5 * groups) = v5;
        Unsafe.Add(ref l, 6 * groups) = v6;
        Unsafe.Add(ref l, 7 * groups) = v7;
        Unsafe.Add(ref l, 8 * groups) = v8;
        Unsafe.Add(ref l, 9 * groups) = v9;
        Unsafe.Add(ref l, 10 * groups) = v10;
        Unsafe.Add(ref l, 11 * groups) = v11;
        Unsafe.Add(ref l, 12 * groups) = v12;
        Unsafe.Add(ref l, 13 * groups) = v13;
        Unsafe.Add(ref l, 14 * groups) = v14;
        Unsafe.Add(ref l, 15 * groups) = v15;
    }
}
