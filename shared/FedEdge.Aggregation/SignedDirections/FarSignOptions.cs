using System.Globalization;

namespace FedEdge.Aggregation.SignedDirections;

/// <summary>How a FAR-SIGN device computes its answers (algorithms.md §4).</summary>
public enum DerivativeOrder
{
    /// <summary>b_k = sign(⟨∇f_i(x̃), u_k⟩): one minibatch gradient answers all K directions.</summary>
    First,

    /// <summary>b_k = sign(f_i(x̃ + c·u_k) − f_i(x̃ − c·u_k)): two loss evaluations per direction, any model.</summary>
    Zeroth,
}

/// <summary>
/// A FAR-SIGN federation's parameters, as in the algorithm spec
/// "far-sign:order=first|zeroth,directions=K,alpha=..,beta=..,a=..,b=..,k0=..,c=..,batch=..,seed=..,staleness=..".
/// The defaults were picked by measurement (bench/results/2026-12-07-far-sign).
/// </summary>
public sealed record FarSignOptions
{
    /// <summary>The keys <see cref="FromParameters"/> reads.</summary>
    public static IReadOnlyList<string> Keys { get; } = ["order", "directions", "alpha", "beta", "a", "b", "k0", "c", "batch", "seed", "staleness"];

    public DerivativeOrder Order { get; init; } = DerivativeOrder.First;

    /// <summary>K, the most directions (answers) one message carries.</summary>
    public int Directions { get; init; } = 1024;

    /// <summary>α₀ of α_k = α₀/(k + k₀)^a: with the defaults α_0 = 16/10⁵^0.7 ≈ 0.0051.</summary>
    public double Alpha { get; init; } = 16.0;

    /// <summary>β₀ of β_k = β₀/(k + k₀)^b: with the defaults β_0 = 4/10⁵^0.6 ≈ 0.004 (y averages some 250 answers).</summary>
    public double Beta { get; init; } = 4.0;

    /// <summary>a: algorithms.md suggests 0.9; 0.7 (still &gt; b) decays slower and measured better over 30 simulated s.</summary>
    public double A { get; init; } = 0.7;

    public double B { get; init; } = 0.6;

    /// <summary>k₀: k counts answers (1,024 per message by default), so the schedule starts flat for ~100 messages.</summary>
    public double K0 { get; init; } = 100_000;

    /// <summary>c, the zeroth-order smoothing: the loss is read at x̃ ± c·u_k (‖u_k‖ = 1).</summary>
    public double Smoothing { get; init; } = 0.01;

    /// <summary>Samples in the minibatch a device answers from.</summary>
    public int Batch { get; init; } = 64;

    /// <summary>The federation secret the per-version work seeds derive from (<see cref="RademacherDirections.WorkSeed"/>).</summary>
    public ulong Seed { get; init; }

    /// <summary>Answers computed from a model more than this many versions behind are refused. Every message makes a
    /// version, so this counts messages, not rounds: it must exceed the fleet's spread of speeds.</summary>
    public int MaxStaleness { get; init; } = 10_000;

    public SignSchedule Schedule => new(Alpha, Beta, A, B, K0);

    /// <summary>The first problem with these options, or null.</summary>
    public string? Validate()
    {
        if (Directions is < 1 or > SignAnswerPacket.MaxAnswers)
        {
            return $"directions must lie in 1 … {SignAnswerPacket.MaxAnswers} (got {Directions})";
        }

        if (!(Smoothing > 0) || !double.IsFinite(Smoothing))
        {
            return $"c must be positive (got {Smoothing})";
        }

        if (Batch < 1)
        {
            return $"batch must be positive (got {Batch})";
        }

        return MaxStaleness < 0 ? $"staleness must be non-negative (got {MaxStaleness})" : Schedule.Validate();
    }

    /// <summary>
    /// The options of an algorithm spec's parameters (AlgorithmSpec.Parameters), defaults for absent keys. Throws
    /// <see cref="FormatException"/> naming the key that is unknown or whose value is unusable.
    /// </summary>
    public static FarSignOptions FromParameters(IReadOnlyDictionary<string, string> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        foreach (var key in parameters.Keys)
        {
            if (!Keys.Contains(key))
            {
                throw new FormatException($"far-sign: unknown key '{key}'; expected one of {string.Join(", ", Keys)}.");
            }
        }

        var defaults = new FarSignOptions();
        var options = new FarSignOptions
        {
            Order = Word(parameters, "order") switch
            {
                null or "first" => DerivativeOrder.First,
                "zeroth" => DerivativeOrder.Zeroth,
                var other => throw new FormatException($"far-sign: order={other} is neither 'first' nor 'zeroth'."),
            },
            Directions = Integer(parameters, "directions", defaults.Directions),
            Alpha = Number(parameters, "alpha", defaults.Alpha),
            Beta = Number(parameters, "beta", defaults.Beta),
            A = Number(parameters, "a", defaults.A),
            B = Number(parameters, "b", defaults.B),
            K0 = Number(parameters, "k0", defaults.K0),
            Smoothing = Number(parameters, "c", defaults.Smoothing),
            Batch = Integer(parameters, "batch", defaults.Batch),
            Seed = ParseSeed(parameters),
            MaxStaleness = Integer(parameters, "staleness", defaults.MaxStaleness),
        };
        return options.Validate() is { } problem ? throw new FormatException($"far-sign: {problem}.") : options;
    }

    /// <summary>
    /// The spec text the host publishes to devices (ModelAnnouncement.algorithm): every key except <c>seed</c>. The
    /// federation secret stays on the server; devices get each version's work seed (work_seed) instead.
    /// </summary>
    public string ToSpec() => string.Create(CultureInfo.InvariantCulture,
        $"far-sign:a={A:R},alpha={Alpha:R},b={B:R},batch={Batch},beta={Beta:R},c={Smoothing:R},directions={Directions},k0={K0:R},order={(Order == DerivativeOrder.First ? "first" : "zeroth")},staleness={MaxStaleness}");

    private static string? Word(IReadOnlyDictionary<string, string> parameters, string key) =>
        parameters.TryGetValue(key, out var text) ? text.ToLowerInvariant() : null;

    private static double Number(IReadOnlyDictionary<string, string> parameters, string key, double fallback)
    {
        if (!parameters.TryGetValue(key, out var text))
        {
            return fallback;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            ? value
            : throw new FormatException($"far-sign: {key}={text} is not a finite number.");
    }

    private static int Integer(IReadOnlyDictionary<string, string> parameters, string key, int fallback)
    {
        if (!parameters.TryGetValue(key, out var text))
        {
            return fallback;
        }

        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new FormatException($"far-sign: {key}={text} is not a non-negative integer.");
    }

    private static ulong ParseSeed(IReadOnlyDictionary<string, string> parameters)
    {
        if (!parameters.TryGetValue("seed", out var text))
        {
            return 0;
        }

        bool hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        return ulong.TryParse(hex ? text[2..] : text, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None, CultureInfo.InvariantCulture, out var seed)
            ? seed
            : throw new FormatException($"far-sign: seed={text} is not an unsigned 64-bit integer (decimal or 0x hex).");
    }
}
