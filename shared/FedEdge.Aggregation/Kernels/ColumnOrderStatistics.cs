using System.Buffers;
using System.Numerics;
using System.Runtime.Intrinsics;

namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// Per-coordinate order statistics over n rows: for each column, sort the n values with a vertical SIMD sorting
/// network and reduce the sorted positions [first, last] to one value (mean of the range). The median is the
/// range {⌊(n−1)/2⌋, ⌊n/2⌋}; the trimmed mean is [b, n−b−1].
/// Each column block is first copied into a contiguous n×width tile (one sequential stream instead of n
/// interleaved ones), then processed 4 SIMD vectors of columns at a time.
/// </summary>
internal static class ColumnOrderStatistics
{
    private const int BlockWidth = 1024;
    private const int Groups = 4;

    public static void MeanOfSortedRange(UpdateBatch batch, int first, int last, Span<float> result)
    {
        // Runs of 16 sorted in registers need 32 vector registers (AVX-512); with fewer they would spill.
        if (Vector512.IsHardwareAccelerated)
        {
            MeanOfSortedRange<Vector512<float>, Vector512Lanes>(batch, first, last, result, presortRuns: true);
        }
        else
        {
            MeanOfSortedRange<Vector<float>, VectorLanes>(batch, first, last, result, presortRuns: false);
        }
    }

    private static unsafe void MeanOfSortedRange<TVector, TLanes>(UpdateBatch batch, int first, int last, Span<float> result, bool presortRuns)
        where TVector : struct
        where TLanes : struct, ISimdLanes<TVector>
    {
        int n = batch.Count, d = batch.Dimension;
        var network = SortingNetwork.For(n, first, last, presortRuns);
        var data = batch.Data;
        float scale = 1f / (last - first + 1);
        fixed (float* r = result)
        {
            nint rp = (nint)r;
            ColumnBlocks.For(d, BlockWidth, (long)n * d, (start, len) =>
            {
                int w = TLanes.Count;
                var tileBuffer = ArrayPool<float>.Shared.Rent(n * len);
                var tile = tileBuffer.AsSpan(0, n * len);
                ColumnBlocks.LoadTile(data.Span, n, d, start, len, tile);
                var output = new Span<float>((float*)rp + start, len);
                var lanes = ArrayPool<TVector>.Shared.Rent(Groups * n); // reused for all columns of the block
                int c = 0;
                for (; c + (Groups * w) <= len; c += Groups * w)
                {
                    SortAndReduce<TVector, TLanes>(network, lanes, Groups, tile, len, c, first, last, scale, output[c..]);
                }

                for (; c + w <= len; c += w)
                {
                    SortAndReduce<TVector, TLanes>(network, lanes, 1, tile, len, c, first, last, scale, output[c..]);
                }

                if (c < len)
                {
                    // Tail narrower than a vector: run one zero-padded vector through a scratch tile.
                    var scratch = new float[n * w];
                    for (int i = 0; i < n; i++)
                    {
                        tile.Slice((i * len) + c, len - c).CopyTo(scratch.AsSpan(i * w));
                    }

                    var reduced = new float[w];
                    SortAndReduce<TVector, TLanes>(network, lanes, 1, scratch, w, 0, first, last, scale, reduced);
                    reduced.AsSpan(0, len - c).CopyTo(output[c..]);
                }

                ArrayPool<TVector>.Shared.Return(lanes);
                ArrayPool<float>.Shared.Return(tileBuffer);
            });
        }
    }

    /// <summary>Sorts <paramref name="groups"/> vectors of columns starting at <paramref name="column"/> of the
    /// tile and writes the mean of sorted positions [first, last] for each.</summary>
    private static void SortAndReduce<TVector, TLanes>(SortingNetwork network, TVector[] lanes, int groups,
        Span<float> tile, int width, int column, int first, int last, float scale, Span<float> output)
        where TVector : struct
        where TLanes : struct, ISimdLanes<TVector>
    {
        int w = TLanes.Count;
        for (int g = 0; g < groups; g++)
        {
            for (int row = 0; row < network.PresortedInputs; row += SortingNetwork.RunLength)
            {
                SortingNetwork.SortRun16<TVector, TLanes>(tile, width, column + (g * w), row, lanes, groups, g);
            }
        }

        for (int i = network.PresortedInputs; i < network.Size; i++)
        {
            for (int g = 0; g < groups; g++)
            {
                lanes[(groups * i) + g] = TLanes.Load(ref SimdSpan.At(tile, (i * width) + column + (g * w)));
            }
        }

        network.Sort<TVector, TLanes>(lanes, groups);
        for (int g = 0; g < groups; g++)
        {
            var sum = lanes[(groups * first) + g];
            for (int k = first + 1; k <= last; k++)
            {
                sum = TLanes.Add(sum, lanes[(groups * k) + g]);
            }

            TLanes.Store(TLanes.Scale(sum, scale), ref SimdSpan.At(output, g * w));
        }
    }
}
