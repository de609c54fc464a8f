namespace FedEdge.Aggregation.Asynchronous;

/// <summary>A discount s(τ) for an update computed from a model τ versions older than the current one.</summary>
public interface IStalenessWeighting
{
    double Weight(int staleness);
}

/// <summary>FedBuff (Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation", AISTATS 2022): s(τ) = 1/√(1 + τ).
/// <example>τ = 3: s = 1/2.</example></summary>
public sealed class FedBuffStaleness : IStalenessWeighting
{
    public double Weight(int staleness) => 1.0 / Math.Sqrt(1.0 + StalenessCheck.NonNegative(staleness));
}

/// <summary>FedAsync (Xie, Koyejo, Gupta, "Asynchronous Federated Optimization", 2019), constant: s(τ) = 1.</summary>
public sealed class ConstantStaleness : IStalenessWeighting
{
    public double Weight(int staleness) => StalenessCheck.NonNegative(staleness) >= 0 ? 1.0 : 0.0;
}

/// <summary>FedAsync polynomial: s(τ) = (τ + 1)^(−a), a = 0.5 by default.
/// <example>a = 0.5, τ = 3: s = 4^(−0.5) = 0.5.</example></summary>
public sealed class PolynomialStaleness(double a = 0.5) : IStalenessWeighting
{
    public double A { get; } = a >= 0 ? a : throw new ArgumentOutOfRangeException(nameof(a), a, "The exponent must be non-negative.");

    public double Weight(int staleness) => Math.Pow(StalenessCheck.NonNegative(staleness) + 1.0, -A);
}

/// <summary>FedAsync hinge: s(τ) = 1 if τ ≤ b, else 1/(a(τ − b) + 1); a = 10, b = 4 by default.
/// <example>a = 10, b = 4: τ = 4 → 1; τ = 6 → 1/21.</example></summary>
public sealed class HingeStaleness(double a = 10, int b = 4) : IStalenessWeighting
{
    public double A { get; } = a >= 0 ? a : throw new ArgumentOutOfRangeException(nameof(a), a, "The slope must be non-negative.");

    public int B { get; } = b >= 0 ? b : throw new ArgumentOutOfRangeException(nameof(b), b, "The threshold must be non-negative.");

    public double Weight(int staleness)
    {
        int tau = StalenessCheck.NonNegative(staleness);
        return tau <= B ? 1.0 : 1.0 / ((A * (tau - B)) + 1.0);
    }
}

/// <summary>
/// FedFix (Fraboni, Vidal, Kameni, Lorenzi, "A General Theory for Federated Optimization with Asynchronous and
/// Heterogeneous Clients Updates", JMLR 2023): the server aggregates every Δt; a device whose update took τ_i
/// (time since it received its model) is weighted d_i = ⌈τ_i/Δt⌉·p_i, p_i its data share.
/// <example>Δt = 10 s, τ_i = 25 s, p_i = 0.1: d_i = 3·0.1 = 0.3.</example>
/// </summary>
public static class FedFixWeighting
{
    public static double Weight(TimeSpan trainingTime, TimeSpan period, double dataShare)
    {
        if (period <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(period), period, "The aggregation period Δt must be positive.");
        }

        if (trainingTime < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(trainingTime), trainingTime, "A training time cannot be negative.");
        }

        if (!double.IsFinite(dataShare) || dataShare < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(dataShare), dataShare, "p_i must be a finite non-negative share.");
        }

        return Math.Ceiling(trainingTime / period) * dataShare;
    }
}

internal static class StalenessCheck
{
    public static int NonNegative(int staleness) => staleness >= 0
        ? staleness
        : throw new ArgumentOutOfRangeException(nameof(staleness), staleness, "Staleness (model versions behind) cannot be negative.");
}

/// <summary>Staleness functions by their configuration names.</summary>
public static class StalenessWeightings
{
    /// <summary>The accepted forms, for error messages.</summary>
    public const string Forms = "fedbuff, constant, polynomial[:a], hinge[:a,b]";

    /// <summary>Parses "fedbuff", "constant", "polynomial[:a]" or "hinge[:a,b]"; false with a reason otherwise.</summary>
    public static bool TryParse(string spec, out IStalenessWeighting? weighting, out string? problem)
    {
        ArgumentNullException.ThrowIfNull(spec);
        weighting = null;
        problem = null;
        var parts = spec.Split(':', 2);
        var args = parts.Length > 1 ? parts[1].Split(',') : [];
        bool Number(int index, double fallback, out double value)
        {
            value = fallback;
            return index >= args.Length || double.TryParse(args[index], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out value) && value >= 0;
        }

        switch (parts[0])
        {
            case "fedbuff" when args.Length == 0:
                weighting = new FedBuffStaleness();
                return true;
            case "constant" when args.Length == 0:
                weighting = new ConstantStaleness();
                return true;
            case "polynomial" when args.Length <= 1 && Number(0, 0.5, out var a):
                weighting = new PolynomialStaleness(a);
                return true;
            case "hinge" when args.Length <= 2 && Number(0, 10, out var slope) && Number(1, 4, out var b) && b == Math.Floor(b):
                weighting = new HingeStaleness(slope, (int)b);
                return true;
            default:
                problem = $"unknown staleness function '{spec}'; expected {Forms} (non-negative numbers)";
                return false;
        }
    }
}
