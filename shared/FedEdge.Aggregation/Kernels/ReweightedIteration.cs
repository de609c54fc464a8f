namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// One step of the iteratively reweighted averages behind the geometric median (Weiszfeld) and centered clipping:
/// z ← s·z + Σ_i a_i·Δ_i, fused with the squared distances ‖z − Δ_i‖² to the new z that the next step needs.
/// Fusing means each iteration reads the n×d input once, while the block is still in cache, instead of twice.
/// </summary>
internal static class ReweightedIteration
{
    private const int BlockWidth = 2048;

    /// <param name="rowCoefficients">a_i, or empty to leave z unchanged and only measure distances.</param>
    /// <param name="selfCoefficient">s.</param>
    /// <param name="z">In: the current point; out: the new point.</param>
    /// <param name="squaredDistances">Out: ‖z_new − Δ_i‖², or empty to skip measuring (last step).</param>
    public static unsafe void Step(UpdateBatch batch, ReadOnlySpan<double> rowCoefficients, double selfCoefficient,
        Span<float> z, double[]? squaredDistances)
    {
        int n = batch.Count, d = batch.Dimension;
        bool combine = !rowCoefficients.IsEmpty;
        var a = new float[rowCoefficients.Length];
        for (int i = 0; i < a.Length; i++)
        {
            a[i] = (float)rowCoefficients[i];
        }

        float s = (float)selfCoefficient;
        var data = batch.Data;
        var totals = squaredDistances ?? [];
        fixed (float* zp = z)
        {
            nint zAddress = (nint)zp;
            ColumnBlocks.ForPartialSums(d, BlockWidth, (long)n * d, totals.Length, totals, (start, len, partial) =>
            {
                var rows = data.Span;
                var zBlock = new Span<float>((float*)zAddress + start, len);
                if (combine)
                {
                    System.Numerics.Tensors.TensorPrimitives.Multiply(zBlock, s, zBlock);
                    for (int i = 0; i < n; i++)
                    {
                        if (a[i] != 0f)
                        {
                            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(
                                rows.Slice((i * d) + start, len), a[i], zBlock, zBlock);
                        }
                    }
                }

                if (partial.Length != 0)
                {
                    for (int i = 0; i < n; i++)
                    {
                        partial[i] += PairwiseDistances.SquaredDistance(zBlock, rows.Slice((i * d) + start, len));
                    }
                }
            });
        }
    }
}
