using System.Numerics.Tensors;

namespace FedEdge.Training.Engine;

/// <summary>
/// prox of τ‖·‖₁, the soft-thresholding operator: prox(v)_j = sign(v_j)·max(|v_j| − τ, 0)
/// (Parikh &amp; Boyd, "Proximal Algorithms", 2014, §6.5.2). Example: τ = 1, v = [3, −0.5, −2] → [2, 0, −1].
/// </summary>
public static class L1Proximal
{
    private const int Block = 1024;

    /// <summary>Soft-thresholds <paramref name="values"/> in place by <paramref name="threshold"/> (≥ 0).</summary>
    public static void Apply(Span<float> values, float threshold)
    {
        if (threshold <= 0)
        {
            return;
        }

        // sign(v)·max(|v| − τ, 0) = v − clamp(v, −τ, τ): branch-free and vectorised, in stack blocks (no allocation).
        Span<float> clamped = stackalloc float[Block];
        for (var start = 0; start < values.Length; start += Block)
        {
            var block = values.Slice(start, Math.Min(Block, values.Length - start));
            var c = clamped[..block.Length];
            TensorPrimitives.Max(block, -threshold, c);
            TensorPrimitives.Min(c, threshold, c);
            TensorPrimitives.Subtract(block, c, block);
        }
    }
}
