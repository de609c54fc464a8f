using System.Globalization;
using FedEdge.Compression;
using FedEdge.Protocol;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>Which surrogate FedMM runs (algorithms.md §5).</summary>
public enum SurrogateKind
{
    /// <summary><see cref="QuadraticSurrogate"/>: φ(θ) = θ, s = Lθ − ∇f(θ).</summary>
    Quadratic,

    /// <summary><see cref="LogisticCurvatureSurrogate"/>: s = (h, h⊙θ − ∇f(θ)).</summary>
    Logistic,

    /// <summary><see cref="DictionarySurrogate"/>: s = (A, B) of Mairal et al. 2010.</summary>
    Dictionary,
}

/// <summary>How the server weighs devices (π_i of <see cref="FedMMServerRule"/>).</summary>
public enum FedMMWeighting
{
    /// <summary>π_i = 1/n: f = (1/n)·Σ f_i, as in the paper.</summary>
    Uniform,

    /// <summary>π_i = N_i / Σ_fleet N_j: f is the mean loss over the union of the devices' data (FedAvg's weighting).</summary>
    Samples,
}

/// <summary>
/// FedMM's parameters, from the federation's algorithm spec, e.g.
/// "fedmm:surrogate=logistic,l1=0.0001,gamma=1,p=0.5" (keys are lower-case, so the smoothness L is "l=").
/// <list type="bullet">
/// <item>surrogate: quadratic | logistic | dictionary (default quadratic).</item>
/// <item>l1: λ of g = λ‖θ‖₁ (default 0; not for dictionary).</item>
/// <item>l: the smoothness constant L of the quadratic surrogate (required there; see
/// <see cref="QuadraticSurrogate.SoftmaxSmoothnessBound"/>).</item>
/// <item>alpha: the control variates' step α ≤ 1/(1 + ω) (default: 1/(1 + ω) of the federation's codec,
/// <see cref="CodecVariance"/>).</item>
/// <item>gamma: the server's step γ on Ŝ (default 1). [design] The paper's analysis takes γ small with compression and
/// partial participation; γ = 1 with q = 1 and an exact codec makes Ŝ the mean statistic, i.e. the exact federated MM
/// step, and is the natural default; the study sets it explicitly.</item>
/// <item>p: the fraction of the fleet asked per version (each device active with probability ≈ p; default 1).</item>
/// <item>weights: uniform | samples (default samples).</item>
/// <item>atoms, patch, penalty, coding: the dictionary's k (default 32), patch side (default 8, p = 64 values), λ_dl
/// (default 0.1) and FISTA iterations per code (default 100).</item>
/// </list>
/// </summary>
public sealed record FedMMOptions
{
    /// <summary>The keys <see cref="Parse"/> accepts.</summary>
    public static IReadOnlyList<string> Keys { get; } = ["surrogate", "l1", "l", "alpha", "gamma", "p", "weights", "atoms", "patch", "penalty", "coding", "seed"];

    public SurrogateKind Surrogate { get; init; } = SurrogateKind.Quadratic;

    public double L1 { get; init; }

    /// <summary>L of the quadratic surrogate; null when not configured.</summary>
    public double? Smoothness { get; init; }

    /// <summary>α; null: 1/(1 + ω) of the codec (<see cref="ResolveAlpha"/>).</summary>
    public double? Alpha { get; init; }

    public double Gamma { get; init; } = 1.0;

    public double Participation { get; init; } = 1.0;

    public FedMMWeighting Weighting { get; init; } = FedMMWeighting.Samples;

    public int Atoms { get; init; } = 32;

    public int PatchSide { get; init; } = 8;

    public double Penalty { get; init; } = 0.1;

    public int CodingIterations { get; init; } = 100;

    /// <summary>Seed of the participation draw (<see cref="FedMMParticipation"/>), shared by the server and the devices.</summary>
    public int Seed { get; init; }

    /// <summary>Reads a "fedmm:…" spec; throws <see cref="FormatException"/> naming the bad key or value.</summary>
    public static FedMMOptions Parse(AlgorithmSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Name != AlgorithmSpec.FedMM)
        {
            throw new FormatException($"Algorithm '{spec.Name}' is not {AlgorithmSpec.FedMM}.");
        }

        foreach (var key in spec.Parameters.Keys)
        {
            if (!Keys.Contains(key))
            {
                throw new FormatException($"Algorithm fedmm: unknown key '{key}'; known: {string.Join(", ", Keys)}.");
            }
        }

        var options = new FedMMOptions
        {
            Surrogate = spec.Word("surrogate", "quadratic") switch
            {
                "quadratic" => SurrogateKind.Quadratic,
                "logistic" => SurrogateKind.Logistic,
                "dictionary" => SurrogateKind.Dictionary,
                var other => throw new FormatException($"Algorithm fedmm: surrogate={other} is not quadratic, logistic or dictionary."),
            },
            L1 = spec.Number("l1", 0),
            Smoothness = spec.Parameters.ContainsKey("l") ? spec.Number("l", 0) : null,
            Alpha = spec.Parameters.ContainsKey("alpha") ? spec.Number("alpha", 0) : null,
            Gamma = spec.Number("gamma", 1.0),
            Participation = spec.Number("p", 1.0),
            Weighting = spec.Word("weights", "samples") switch
            {
                "uniform" => FedMMWeighting.Uniform,
                "samples" => FedMMWeighting.Samples,
                var other => throw new FormatException($"Algorithm fedmm: weights={other} is not uniform or samples."),
            },
            Atoms = Integer(spec, "atoms", 32),
            PatchSide = Integer(spec, "patch", 8),
            Penalty = spec.Number("penalty", 0.1),
            CodingIterations = Integer(spec, "coding", 100),
            Seed = Integer(spec, "seed", 0),
        };
        return options.Validate() is { } problem ? throw new FormatException($"Algorithm fedmm: {problem}") : options;
    }

    /// <summary>The first problem with these options (naming the key), or null.</summary>
    public string? Validate()
    {
        if (!(L1 >= 0))
        {
            return $"l1={L1} must be ≥ 0.";
        }

        if (Smoothness is { } l && !(l > 0))
        {
            return $"l={l} (the smoothness L) must be > 0.";
        }

        if (Surrogate == SurrogateKind.Quadratic && Smoothness is null)
        {
            return "the quadratic surrogate needs l= (the smoothness constant L).";
        }

        if (Alpha is { } alpha && !(alpha is > 0 and <= 1))
        {
            return $"alpha={alpha} must lie in (0, 1].";
        }

        if (!(Gamma is > 0 and <= 1))
        {
            return $"gamma={Gamma} must lie in (0, 1].";
        }

        if (!(Participation is > 0 and <= 1))
        {
            return $"p={Participation} must lie in (0, 1].";
        }

        if (Surrogate == SurrogateKind.Dictionary && L1 != 0)
        {
            return "l1 does not apply to the dictionary surrogate (its codes' penalty is penalty=).";
        }

        if (Atoms is < 1 or > 1024 || PatchSide is < 1 or > 64 || CodingIterations is < 1 or > 10_000 || !(Penalty >= 0))
        {
            return $"atoms={Atoms} (1..1024), patch={PatchSide} (1..64), coding={CodingIterations} (1..10000) or penalty={Penalty} (≥ 0) is out of range.";
        }

        return null;
    }

    /// <summary>α: the configured one, checked against 1/(1 + ω) of <paramref name="codec"/>, or 1/(1 + ω).</summary>
    public double ResolveAlpha(IUpdateCodec codec, int statisticLength)
    {
        double max = CodecVariance.MaxAlpha(codec, statisticLength);
        return Alpha switch
        {
            null => max,
            // A tiny slack so that alpha=0.64 passes with sign (1/(1 + ω) = 0.6366…).
            { } alpha when alpha <= max * 1.01 => alpha,
            { } alpha => throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"fedmm: alpha={alpha} exceeds 1/(1 + ω) = {max:G4} of codec {codec.Spec}.")),
        };
    }

    /// <summary>
    /// The surrogate these options name, for a model of <paramref name="parameterCount"/> parameters; the logistic one
    /// needs a linear model on <paramref name="featureCount"/> inputs with <paramref name="classCount"/> outputs
    /// (d = K·(p + 1), the zoo logreg), the dictionary one uses <see cref="Atoms"/> atoms of <see cref="PatchSide"/>²
    /// values. The server and the devices build it here, so they agree on m and T. Throws
    /// <see cref="ArgumentException"/> naming what does not fit.
    /// </summary>
    public ISurrogate CreateSurrogate(int parameterCount, int featureCount, int classCount, float inputMean = 0f, float inputStd = 1f) => Surrogate switch
    {
        SurrogateKind.Quadratic => new QuadraticSurrogate(parameterCount,
            Smoothness ?? throw new ArgumentException("fedmm: the quadratic surrogate needs l= (the smoothness constant L)."), L1),
        SurrogateKind.Logistic when featureCount > 0 && classCount > 1 && classCount * (featureCount + 1) == parameterCount =>
            new LogisticCurvatureSurrogate(featureCount, classCount, L1, inputMean, inputStd),
        SurrogateKind.Logistic => throw new ArgumentException(
            $"fedmm: the logistic surrogate needs a linear model (d = K·(p + 1)); this one has d = {parameterCount}, {featureCount} inputs and {classCount} outputs."),
        _ => new DictionarySurrogate(PatchSide * PatchSide, Atoms, Penalty, CodingIterations),
    };

    /// <summary>The spec text of these options (canonical key order).</summary>
    public override string ToString()
    {
        var parts = new List<string> { $"surrogate={Surrogate.ToString().ToLowerInvariant()}" };
        static string F(string key, double value) => $"{key}={value.ToString("R", CultureInfo.InvariantCulture)}";
        if (L1 != 0)
        {
            parts.Add(F("l1", L1));
        }

        if (Smoothness is { } l)
        {
            parts.Add(F("l", l));
        }

        if (Alpha is { } alpha)
        {
            parts.Add(F("alpha", alpha));
        }

        parts.Add(F("gamma", Gamma));
        parts.Add(F("p", Participation));
        parts.Add($"weights={Weighting.ToString().ToLowerInvariant()}");
        if (Surrogate == SurrogateKind.Dictionary)
        {
            parts.Add($"atoms={Atoms}");
            parts.Add($"patch={PatchSide}");
            parts.Add(F("penalty", Penalty));
            parts.Add($"coding={CodingIterations}");
        }

        if (Seed != 0)
        {
            parts.Add($"seed={Seed}");
        }

        return $"{AlgorithmSpec.FedMM}:{string.Join(',', parts)}";
    }

    private static int Integer(AlgorithmSpec spec, string key, int fallback)
    {
        double value = spec.Number(key, fallback);
        return value == Math.Floor(value) && value is >= int.MinValue and <= int.MaxValue
            ? (int)value
            : throw new FormatException($"Algorithm fedmm: {key}={value} is not an integer.");
    }
}
