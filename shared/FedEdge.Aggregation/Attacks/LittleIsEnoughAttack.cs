namespace FedEdge.Aggregation.Attacks;

/// <summary>
/// "A little is enough", ALIE (Baruch, Baruch, Goldberg, NeurIPS 2019): send μ − z·σ, with μ and σ the
/// coordinate-wise mean and standard deviation of the honest updates and
/// z = Φ⁻¹((n − f − s)/(n − f)), s = ⌊n/2 + 1⌋ − f (the supporters the attackers need). The shift stays inside the
/// honest spread, so distance- and rank-based rules do not filter it.
/// <example>n = 25, f = 5: s = 13 − 5 = 8, z = Φ⁻¹(12/20) = Φ⁻¹(0.6) ≈ 0.2533.</example>
/// </summary>
public sealed class LittleIsEnoughAttack : IUpdateAttack
{
    public LittleIsEnoughAttack(int n, int f)
    {
        Z = DefaultZ(n, f);
    }

    /// <summary>The shift in standard deviations.</summary>
    public double Z { get; }

    public string Name => "alie";

    /// <summary>z = Φ⁻¹((n − f − s)/(n − f)) with s = ⌊n/2 + 1⌋ − f.</summary>
    public static double DefaultZ(int n, int f)
    {
        if (f < 0 || f >= n)
        {
            throw new ArgumentOutOfRangeException(nameof(f), f, $"ALIE needs 0 ≤ f < n (n = {n}).");
        }

        int s = (n / 2) + 1 - f;
        double p = (double)(n - f - s) / (n - f);
        if (p <= 0 || p >= 1)
        {
            throw new ArgumentException($"ALIE's quantile (n − f − s)/(n − f) = {p} is outside (0, 1) for n = {n}, f = {f}.");
        }

        return NormalDistribution.InverseCdf(p);
    }

    public void Forge(UpdateBatch honest, ReadOnlySpan<float> own, Span<float> forged)
    {
        ArgumentNullException.ThrowIfNull(honest);
        int n = honest.Count;
        for (int j = 0; j < honest.Dimension; j++)
        {
            // Two-pass mean and (population) variance per coordinate, as torch.std(unbiased=False) would.
            double mean = 0;
            for (int i = 0; i < n; i++)
            {
                mean += honest.Row(i)[j];
            }

            mean /= n;
            double variance = 0;
            for (int i = 0; i < n; i++)
            {
                double e = honest.Row(i)[j] - mean;
                variance += e * e;
            }

            forged[j] = (float)(mean - (Z * Math.Sqrt(variance / n)));
        }
    }
}
