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

/// <summary>
/// Builds a rule from its name: mean, median, trimmed-mean, krum, multi-krum, geomed, centered-clip, sign-vote, or a
/// robust rule behind nearest-neighbour mixing, "nnm+RULE" (Allouah et al. 2023: NNM with the same f before the rule).
/// </summary>
public static class AggregationRuleFactory
{
    /// <summary>Prefix of the rules preceded by <see cref="NearestNeighborMixingPreAggregator"/>.</summary>
    public const string MixingPrefix = "nnm+";

    private static readonly string[] BaseNames =
        ["mean", "median", "trimmed-mean", "krum", "multi-krum", "geomed", "centered-clip", "sign-vote"];

    /// <summary>
    /// Every name <see cref="Create"/> accepts: the base rules, then "nnm+RULE" for the robust ones (mixing before
    /// the plain mean or the sign vote defends nothing: the mean of mixed rows is a weighted mean of all rows).
    /// </summary>
    public static IReadOnlyList<string> Names { get; } =
        [.. BaseNames, .. BaseNames.Where(n => n is not ("mean" or "sign-vote")).Select(n => MixingPrefix + n)];

    /// <param name="count">n, needed for Multi-Krum's default m = n − f.</param>
    public static IAggregationRule Create(string name, RuleParameters parameters, int count)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.F < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(parameters), parameters.F, "f must be non-negative.");
        }

        if (!Names.Contains(name))
        {
            throw new ArgumentException($"Unknown rule '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name));
        }

        bool mixing = name.StartsWith(MixingPrefix, StringComparison.Ordinal);
        string baseName = mixing ? name[MixingPrefix.Length..] : name;
        IAggregationRule rule = baseName switch
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

        if (parameters.BucketSize > 1)
        {
            rule = new PreAggregatedRule(new BucketingPreAggregator(parameters.BucketSize, parameters.Seed), rule);
        }

        // Mixing first: NNM's guarantee needs the raw rows (each mixed row averages n − f of them).
        return mixing ? new PreAggregatedRule(new NearestNeighborMixingPreAggregator(parameters.F), rule) : rule;
    }
}
