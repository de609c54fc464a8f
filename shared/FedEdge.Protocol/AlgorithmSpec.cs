using System.Globalization;

namespace FedEdge.Protocol;

/// <summary>
/// What devices compute for a federation, as announced with every model (<c>ModelAnnouncement.algorithm</c>):
/// a name and parameters, "name" or "name:key=value,key=value", e.g. "fedavg:l1=0.0001",
/// "fedmm:surrogate=quadratic,l1=0.0001,alpha=0.5" or "far-sign:order=first,directions=1024". Keys are lower-case;
/// values are numbers or words. The algorithm's own options class reads and checks its parameters.
/// </summary>
public sealed record AlgorithmSpec(string Name, IReadOnlyDictionary<string, string> Parameters)
{
    /// <summary>Longest spec a device accepts.</summary>
    public const int MaxLength = 512;

    public const string FedAvg = "fedavg";
    public const string FedMM = "fedmm";
    public const string FarSign = "far-sign";

    /// <summary>The default: FedAvg's local training, no parameters.</summary>
    public static AlgorithmSpec Default { get; } = new(FedAvg, new Dictionary<string, string>());

    public static AlgorithmSpec Parse(string spec) =>
        TryParse(spec, out var parsed, out var error) ? parsed : throw new FormatException(error);

    /// <summary>Parses a spec; an empty one is <see cref="Default"/>.</summary>
    public static bool TryParse(string? spec, out AlgorithmSpec parsed, out string error)
    {
        parsed = Default;
        error = "";
        if (string.IsNullOrWhiteSpace(spec))
        {
            return true;
        }

        if (spec.Length > MaxLength)
        {
            error = $"The algorithm spec has {spec.Length} characters; at most {MaxLength} are allowed.";
            return false;
        }

        var colon = spec.IndexOf(':', StringComparison.Ordinal);
        var name = (colon < 0 ? spec : spec[..colon]).Trim().ToLowerInvariant();
        if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
        {
            error = $"Algorithm '{spec}' has no valid name (letters, digits and '-').";
            return false;
        }

        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        if (colon >= 0)
        {
            foreach (var pair in spec[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                var key = eq <= 0 ? "" : pair[..eq].Trim().ToLowerInvariant();
                var value = eq <= 0 ? "" : pair[(eq + 1)..].Trim();
                if (key.Length == 0 || value.Length == 0 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')
                    || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '+'))
                {
                    error = $"Algorithm '{spec}': '{pair}' is not key=value.";
                    return false;
                }

                if (!parameters.TryAdd(key, value))
                {
                    error = $"Algorithm '{spec}': '{key}' is given twice.";
                    return false;
                }
            }
        }

        parsed = new AlgorithmSpec(name, parameters);
        return true;
    }

    /// <summary>A number parameter, or <paramref name="fallback"/> when absent; throws <see cref="FormatException"/> naming the key when it is not a finite number.</summary>
    public double Number(string key, double fallback)
    {
        if (!Parameters.TryGetValue(key, out var text))
        {
            return fallback;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            ? value
            : throw new FormatException($"Algorithm {Name}: {key}={text} is not a finite number.");
    }

    /// <summary>A word parameter, or <paramref name="fallback"/> when absent.</summary>
    public string Word(string key, string fallback) => Parameters.TryGetValue(key, out var text) ? text.ToLowerInvariant() : fallback;

    /// <summary>The canonical text: name, then the parameters sorted by key.</summary>
    public override string ToString() => Parameters.Count == 0
        ? Name
        : $"{Name}:{string.Join(',', Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"))}";
}
