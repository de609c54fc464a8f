using FedEdge.Compression;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// ω, the variance factor of a codec as FedMM's α ≤ 1/(1 + ω) reads it (algorithms.md §5; an unbiased compressor has
/// E‖Q(x) − x‖² ≤ ω‖x‖²; a biased δ-contractive one, ‖C(x) − x‖² ≤ (1 − δ)‖x‖², is counted as ω = 1/δ − 1, the ω of
/// the unbiased compressor with the same contraction after scaling by 1/(1 + ω), so α ≤ δ).
/// <list type="bullet">
/// <item>fp32: exact, ω = 0 (α = 1).</item>
/// <item>fp16: relative rounding error ≤ 2⁻¹¹ per coordinate, so ‖Q(x) − x‖² ≤ 2⁻²²‖x‖²: ω = 2⁻²² ≈ 0.</item>
/// <item>topk:r (k = ⌈r·d⌉ of d kept): δ = k/d (the kept coordinates carry at least a k/d share of ‖x‖²): ω = d/k − 1,
/// α = k/d.</item>
/// <item>sign (scaled per block of B: (‖x_B‖₁/B)·sign(x_B)): δ = ‖x_B‖₁²/(B·‖x_B‖²), between 1/B (one non-zero per
/// block) and 1 (equal magnitudes). The worst case (α = 1/4096) would switch the control variates off; FedEdge uses the
/// value for Gaussian-like coordinates, δ = E|x|²/E[x²] = 2/π, ω = π/2 − 1 ≈ 0.571, α ≈ 0.64 — a typical-case value,
/// not a bound; configure alpha= lower when the differences are spiky.</item>
/// </list>
/// </summary>
public static class CodecVariance
{
    /// <summary>ω of <paramref name="codec"/> on vectors of <paramref name="dimension"/> values.</summary>
    public static double Omega(IUpdateCodec codec, int dimension)
    {
        ArgumentNullException.ThrowIfNull(codec);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        return codec switch
        {
            Fp32Codec => 0.0,
            Fp16Codec => Math.Pow(2, -22),
            TopKCodec topK => (double)dimension / topK.KeptCount(dimension) - 1.0,
            SignCodec => Math.PI / 2 - 1.0,
            _ => throw new ArgumentException($"No variance factor is known for codec '{codec.Spec}'.", nameof(codec)),
        };
    }

    /// <summary>The largest α FedMM allows with <paramref name="codec"/>: 1/(1 + ω).</summary>
    public static double MaxAlpha(IUpdateCodec codec, int dimension) => 1.0 / (1.0 + Omega(codec, dimension));
}
