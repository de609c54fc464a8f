namespace FedEdge.Aggregation.Attacks;

/// <summary>
/// A Byzantine device's forged update, for the simulator only (never used by the aggregator). Attacks follow
/// epfml/byzantine-robust-noniid-optimizer (Karimireddy, He, Jaggi, ICLR 2022): the attacker may see the honest
/// updates of the round (omniscient) and its own honest update.
/// </summary>
public interface IUpdateAttack
{
    string Name { get; }

    /// <param name="honest">The honest updates of the round (may be used by omniscient attacks).</param>
    /// <param name="own">The update the attacker would have sent had it been honest.</param>
    /// <param name="forged">Output, d coordinates.</param>
    void Forge(UpdateBatch honest, ReadOnlySpan<float> own, Span<float> forged);
}

/// <summary>Sign flip: send −Δ, the honest update reversed.
/// <example>own = [1, −2] → [−1, 2].</example></summary>
public sealed class SignFlipAttack : IUpdateAttack
{
    public string Name => "sign-flip";

    public void Forge(UpdateBatch honest, ReadOnlySpan<float> own, Span<float> forged) =>
        System.Numerics.Tensors.TensorPrimitives.Negate(own, forged);
}

/// <summary>Gaussian noise: send a draw of N(0, σ²·I), σ² = 200 by default; seeded, so runs are reproducible.</summary>
public sealed class GaussianAttack(double variance = 200, int seed = 0) : IUpdateAttack
{
    private readonly Random _random = new(seed);

    public double Variance { get; } = variance >= 0 ? variance : throw new ArgumentOutOfRangeException(nameof(variance));

    public string Name => "gaussian";

    public void Forge(UpdateBatch honest, ReadOnlySpan<float> own, Span<float> forged)
    {
        double sigma = Math.Sqrt(Variance);
        for (int j = 0; j < forged.Length; j += 2)
        {
            // Box–Muller: two independent N(0, 1) per pair of uniforms.
            double u1 = 1.0 - _random.NextDouble(), u2 = _random.NextDouble();
            double r = sigma * Math.Sqrt(-2.0 * Math.Log(u1));
            forged[j] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (j + 1 < forged.Length)
            {
                forged[j + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
            }
        }
    }
}

/// <summary>
/// Inner-product manipulation, IPM (Xie, Koyejo, Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner
/// Product Manipulation", UAI 2019): send −ε·mean(honest), ε = 0.1, so the aggregate's inner product with the true
/// update turns negative once enough attackers collude.
/// <example>ε = 0.1, honest [1, 2] and [3, 4]: forged = −0.1·[2, 3] = [−0.2, −0.3].</example>
/// </summary>
public sealed class InnerProductManipulationAttack(double epsilon = 0.1) : IUpdateAttack
{
    public double Epsilon { get; } = epsilon;

    public string Name => "ipm";

    public void Forge(UpdateBatch honest, ReadOnlySpan<float> own, Span<float> forged)
    {
        ArgumentNullException.ThrowIfNull(honest);
        var mean = new double[honest.Dimension];
        for (int i = 0; i < honest.Count; i++)
        {
            var row = honest.Row(i);
            for (int j = 0; j < mean.Length; j++)
            {
                mean[j] += row[j];
            }
        }

        for (int j = 0; j < mean.Length; j++)
        {
            forged[j] = (float)(-Epsilon * mean[j] / honest.Count);
        }
    }
}

/// <summary>Label flip (data side, not an update forgery): a Byzantine device trains on y → (C − 1) − y.
/// <example>C = 10: 0 → 9, 3 → 6.</example></summary>
public static class LabelFlipAttack
{
    public static int Flip(int label, int classes = 10)
    {
        if ((uint)label >= (uint)classes)
        {
            throw new ArgumentOutOfRangeException(nameof(label), label, $"Labels must lie in [0, {classes}).");
        }

        return classes - 1 - label;
    }

    public static void FlipAll(Span<int> labels, int classes = 10)
    {
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = Flip(labels[i], classes);
        }
    }
}
