namespace FedEdge.Aggregation.ServerOptimizers;

/// <summary>
/// The common part of FedAdagrad, FedAdam and FedYogi (Reddi et al., ICLR 2021, Algorithm 2):
/// m ← β₁·m + (1 − β₁)·Δ;  v ← (rule-specific);  x ← x + η·m / (√v + τ).
/// No bias correction (as in the paper). v starts at τ² (the paper's v₋₁ ≥ τ²). Defaults follow the paper:
/// β₁ = 0.9, β₂ = 0.99, τ = 1e-3; η is tuned per task (paper grid 10^{-3}…10^{0}).
/// </summary>
public abstract class AdaptiveServerOptimizer : ServerOptimizer
{
    private float[] _m = [];
    private float[] _v = [];

    protected AdaptiveServerOptimizer(double learningRate, double beta1, double beta2, double tau)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(learningRate);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tau);
        LearningRate = learningRate;
        Beta1 = beta1;
        Beta2 = beta2;
        Tau = tau;
    }

    public double LearningRate { get; }

    public double Beta1 { get; }

    public double Beta2 { get; }

    /// <summary>τ, the adaptivity floor.</summary>
    public double Tau { get; }

    protected override int StateLength => _m.Length;

    protected override void InitializeState(int length)
    {
        _m = new float[length];
        _v = new float[length];
        Array.Fill(_v, (float)(Tau * Tau));
    }

    protected override IReadOnlyList<(string Name, float[] Vector)> Vectors => [("m", _m), ("v", _v)];

    /// <summary>The new second moment from the old one and Δ².</summary>
    protected abstract float SecondMoment(float v, float squared);

    protected override void Step(Span<float> model, ReadOnlySpan<float> aggregate)
    {
        float b1 = (float)Beta1, eta = (float)LearningRate, tau = (float)Tau;
        for (int j = 0; j < model.Length; j++)
        {
            float g = aggregate[j];
            float m = (b1 * _m[j]) + ((1 - b1) * g);
            float v = SecondMoment(_v[j], g * g);
            _m[j] = m;
            _v[j] = v;
            model[j] += eta * m / (MathF.Sqrt(v) + tau);
        }
    }
}

/// <summary>
/// FedAdagrad (Reddi et al., ICLR 2021): v ← v + Δ².
/// <example>η = 0.1, τ = 0.001, β₁ = 0.9, Δ = [2]: m = 0.2, v = 1e-6 + 4, x += 0.1·0.2/(2.00000025 + 0.001) ≈ 0.009995.</example>
/// </summary>
public sealed class FedAdagradOptimizer(double learningRate = 0.1, double beta1 = 0.9, double tau = 1e-3)
    : AdaptiveServerOptimizer(learningRate, beta1, 0.0, tau)
{
    public override string Name => "fedadagrad";

    protected override float SecondMoment(float v, float squared) => v + squared;
}

/// <summary>
/// FedAdam (Reddi et al., ICLR 2021): v ← β₂·v + (1 − β₂)·Δ².
/// <example>η = 0.1, β₁ = 0.9, β₂ = 0.99, τ = 0.001, Δ = [2]: m = 0.2, v = 0.99e-6 + 0.04, x += 0.02/(0.2000025 + 0.001) ≈ 0.09950.</example>
/// </summary>
public sealed class FedAdamOptimizer(double learningRate = 0.1, double beta1 = 0.9, double beta2 = 0.99, double tau = 1e-3)
    : AdaptiveServerOptimizer(learningRate, beta1, beta2, tau)
{
    public override string Name => "fedadam";

    protected override float SecondMoment(float v, float squared) =>
        ((float)Beta2 * v) + ((1 - (float)Beta2) * squared);
}

/// <summary>
/// FedYogi (Reddi et al., ICLR 2021; Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018):
/// v ← v − (1 − β₂)·Δ²·sign(v − Δ²), which grows v additively rather than multiplicatively.
/// <example>β₂ = 0.99, τ = 0.001, Δ = [2]: v = 1e-6 − 0.01·4·sign(1e-6 − 4) = 0.040001.</example>
/// </summary>
public sealed class FedYogiOptimizer(double learningRate = 0.1, double beta1 = 0.9, double beta2 = 0.99, double tau = 1e-3)
    : AdaptiveServerOptimizer(learningRate, beta1, beta2, tau)
{
    public override string Name => "fedyogi";

    protected override float SecondMoment(float v, float squared) =>
        v - ((1 - (float)Beta2) * squared * MathF.Sign(v - squared));
}
