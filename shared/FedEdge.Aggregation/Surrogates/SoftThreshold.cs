using System.Numerics.Tensors;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// prox of τ|·|, the soft-thresholding operator: soft(v, τ) = sign(v)·max(|v| − τ, 0) (Parikh &amp; Boyd, "Proximal
/// Algorithms", 2014, §6.5.2). The surrogates' maps T(s) use it for g = λ‖θ‖₁, and local proximal SGD on the same g
/// (OnnxTrainer.SoftThreshold) uses the vector form.
/// <example>soft(3, 1) = 2, soft(−0.5, 1) = 0, soft(−2, 1) = −1.</example>
/// </summary>
public static class SoftThreshold
{
    private const int Block = 1024;

    public static double Apply(double value, double threshold) =>
        value > threshold ? value - threshold : value < -threshold ? value + threshold : 0.0;

    /// <summary>Soft-thresholds <paramref name="values"/> in place by <paramref name="threshold"/> (≥ 0).</summary>
    public static void Apply(Span<float> values, float threshold)
    {
        if (threshold <= 0)
        {
            return;
        }

        // soft(v, τ) = v − clamp(v, −τ, τ): branch-free and vectorised, in stack blocks (no allocation).
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
