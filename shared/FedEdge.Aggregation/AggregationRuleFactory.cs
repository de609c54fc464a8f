using FedEdge.Aggregation.PreAggregation;
using FedEdge.Aggregation.Rules;

namespace FedEdge.Aggregation;

/// <summary>Parameters of the rules by their command-line names; defaults from algorithms.md §2.</summary>
public sealed record RuleParameters
{
    /// <summary>f, the Byzantine updates to tolerate.</summary>
    public int F { get; init; }

    /// <summary>m for Multi-Krum (default n − f).</summary>
    public int? M { get; init; }

    /// <summary>Bucket size s; 0 or 1 for no bucketing.</summary>
    public int BucketSize { get; init; }

    /// <summary>Seed of the bucketing shuffle.</summary>
    public int Seed { get; init; }

    /// <summary>τ of centered clipping.</summary>
    public double Tau { get; init; } = 10.0;

    /// <summary>Iterations: L of centered clipping (default 3), T of the geometric median (default 8).</summary>
    public int? Iterations { get; init; }

    /// <summary>ν of the geometric median.</summary>
    public double Nu { get; init; } = 0.1;
}

/// <summary>Builds a rule from its name: mean, median, trimmed-mean, krum, multi-krum, geomed, centered-clip, sign-vote.</summary>
public static class AggregationRuleFactory
{
    public static IReadOnlyList<string> Names { get; } =
        ["mean", "median", "trimmed-mean", "krum", "multi-krum", "geomed", "centered-clip", "sign-vote"];

    /// <param name="count">n, needed for Multi-Krum's default m = n − f.</param>
    public static IAggregationRule Create(string name, RuleParameters parameters, int count)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.F < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(parameters), parameters.F, "f must be non-negative.");
        }

        IAggregationRule rule = name switch
        {
            "mean" => new WeightedMeanRule(),
            "median" => new CoordinateWiseMedianRule(),
            "trimmed-mean" => new TrimmedMeanRule(parameters.F),
            "krum" => new KrumRule(parameters.F),
            "multi-krum" => new MultiKrumRule(parameters.F, parameters.M ?? Math.Max(1, count - parameters.F)),
            "geomed" => new GeometricMedianRule(parameters.F, parameters.Nu, parameters.Iterations ?? 8),
            "centered-clip" => new CenteredClippingRule(parameters.F, parameters.Tau, parameters.Iterations ?? 3),
            "sign-vote" => new SignMajorityVoteRule(),
            _ => throw new ArgumentException($"Unknown rule '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name)),
        };

        return parameters.BucketSize > 1
            ? new PreAggregatedRule(new BucketingPreAggregator(parameters.BucketSize, parameters.Seed), rule)
            : rule;
    }
}
