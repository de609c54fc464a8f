namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// prox of τ|·|, the soft-thresholding operator: soft(v, τ) = sign(v)·max(|v| − τ, 0) (Parikh &amp; Boyd, "Proximal
/// Algorithms", 2014, §6.5.2). The surrogates' maps T(s) use it for g = λ‖θ‖₁.
/// <example>soft(3, 1) = 2, soft(−0.5, 1) = 0, soft(−2, 1) = −1.</example>
/// </summary>
public static class SoftThreshold
{
    public static double Apply(double value, double threshold) =>
        value > threshold ? value - threshold : value < -threshold ? value + threshold : 0.0;
}
