using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace FedEdge.Compression;

/// <summary>
/// Parses codec specs: <c>fp32</c> | <c>fp16</c> | <c>sign</c> | <c>sign:block=B</c> | <c>topk:α</c> |
/// <c>topk:α,values=fp16</c> (also <c>topk:ratio=α</c>). Names and keys are case-insensitive; the
/// codec's <see cref="IUpdateCodec.Spec"/> is the canonical form.
/// </summary>
public static class UpdateCodecs
{
    /// <summary>Parses a spec; throws <see cref="FormatException"/> naming what was wrong.</summary>
    public static IUpdateCodec Parse(string spec) =>
        TryParse(spec, out IUpdateCodec? codec, out string? error) ? codec : throw new FormatException(error);

    public static bool TryParse(string? spec, [NotNullWhen(true)] out IUpdateCodec? codec, [NotNullWhen(false)] out string? error)
    {
        codec = null;
        error = null;
        if (string.IsNullOrWhiteSpace(spec) || spec.Length > 256)
        {
            error = "The codec spec is empty or too long.";
            return false;
        }
        int colon = spec.IndexOf(':');
        string name = (colon < 0 ? spec : spec[..colon]).Trim().ToLowerInvariant();
        string[] parameters = colon < 0 ? [] : spec[(colon + 1)..].Split(',', StringSplitOptions.TrimEntries);
        try
        {
            switch (name)
            {
                case "fp32" when parameters.Length == 0:
                    codec = Fp32Codec.Instance;
                    return true;
                case "fp16" when parameters.Length == 0:
                    codec = Fp16Codec.Instance;
                    return true;
                case "sign":
                    codec = ParseSign(parameters);
                    return true;
                case "topk":
                    codec = ParseTopK(parameters);
                    return true;
                case "fp32" or "fp16":
                    error = $"Codec '{name}' takes no parameters (spec '{spec}').";
                    return false;
                default:
                    error = $"Unknown codec '{name}' in spec '{spec}'; known: fp32, fp16, sign[:block=B], topk:α[,values=fp16].";
                    return false;
            }
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            error = $"Bad codec spec '{spec}': {e.Message}";
            return false;
        }
    }

    private static SignCodec ParseSign(string[] parameters)
    {
        int block = SignCodec.DefaultBlockSize;
        foreach (string parameter in parameters)
        {
            (string key, string value) = Split(parameter, primaryKey: "block");
            block = key switch
            {
                "block" or "b" => int.Parse(value, NumberStyles.None, CultureInfo.InvariantCulture),
                _ => throw new FormatException($"unknown sign parameter '{key}'"),
            };
        }
        return block == SignCodec.DefaultBlockSize ? SignCodec.Default : new SignCodec(block);
    }

    private static TopKCodec ParseTopK(string[] parameters)
    {
        double? ratio = null;
        TopKValueFormat format = TopKValueFormat.Fp32;
        foreach (string parameter in parameters)
        {
            (string key, string value) = Split(parameter, primaryKey: "ratio");
            switch (key)
            {
                case "ratio" or "alpha":
                    ratio = double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture);
                    break;
                case "values":
                    format = value.ToLowerInvariant() switch
                    {
                        "fp32" => TopKValueFormat.Fp32,
                        "fp16" => TopKValueFormat.Fp16,
                        _ => throw new FormatException($"top-k values must be fp32 or fp16, not '{value}'"),
                    };
                    break;
                default:
                    throw new FormatException($"unknown top-k parameter '{key}'");
            }
        }
        return new TopKCodec(ratio ?? throw new FormatException("top-k needs a ratio, e.g. topk:0.01"), format);
    }

    private static (string Key, string Value) Split(string parameter, string primaryKey)
    {
        int eq = parameter.IndexOf('=');
        return eq < 0
            ? (primaryKey, parameter)
            : (parameter[..eq].Trim().ToLowerInvariant(), parameter[(eq + 1)..].Trim());
    }

    /// <summary>Finds the codec by the first byte of a payload (for diagnostics; decoding needs the spec).</summary>
    public static string? IdOfTag(byte tag) => tag switch
    {
        Fp32Codec.PayloadTag => "fp32",
        Fp16Codec.PayloadTag => "fp16",
        TopKCodec.PayloadTag => "topk",
        SignCodec.PayloadTag => "sign",
        _ => null,
    };
}
