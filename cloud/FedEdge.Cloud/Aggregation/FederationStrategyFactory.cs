using System.Globalization;
using FedEdge.Aggregation;
using FedEdge.Aggregation.Asynchronous;
using FedEdge.Aggregation.SignedDirections;
using FedEdge.Aggregation.Strategies;
using FedEdge.Aggregation.Surrogates;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Models;
using FedEdge.Compression;
using FedEdge.Protocol;

namespace FedEdge.Cloud.Aggregation;

/// <summary>The strategy a <see cref="FederationConfig"/> names: its mode (sync, FedBuff, FedAsync, FedFix) over one
/// <see cref="ServerAggregator"/> (rule, EF21 estimates, server optimizer).</summary>
public static class FederationStrategyFactory
{
    /// <summary>Builds the strategy for <paramref name="dimension"/> parameters; an <see cref="ArgumentException"/>
    /// names what in <paramref name="config"/> cannot run.</summary>
    /// <param name="shape">The model's inputs and outputs (FedMM's logistic surrogate needs them; null: unknown).</param>
    public static IFederationStrategy Create(FederationConfig config, int dimension, ServerState? state = null, ModelShape? shape = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Validate() is { } problem) throw new ArgumentException(problem, nameof(config));
        if (!AlgorithmSpec.TryParse(config.Algorithm, out var algorithm, out var algorithmProblem)) throw new ArgumentException(algorithmProblem, nameof(config));
        try
        {
            switch (algorithm.Name)
            {
                case AlgorithmSpec.FedAvg:
                    if (algorithm.Number("l1", 0) is var l1 && !(l1 >= 0)) throw new ArgumentException($"fedavg: l1={l1} must be ≥ 0.", nameof(config));
                    break;
                case AlgorithmSpec.FedMM:
                    return FedMM(config, algorithm, dimension, state, shape);
                case AlgorithmSpec.FarSign:
                    return FarSign(config, algorithm, dimension, state);
                default:
                    throw new ArgumentException($"Algorithm '{algorithm.Name}' is not fedavg, fedmm or far-sign.", nameof(config));
            }
        }
        catch (FormatException e)
        {
            throw new ArgumentException(e.Message, nameof(config), e);
        }

        var server = new ServerAggregator(ServerOptions(config), dimension, state);
        var asyncOptions = new AsyncOptions { MaxStaleness = config.MaxStaleness, Staleness = Staleness(config.Staleness) };
        return config.Mode switch
        {
            FederationMode.Sync => new SyncRoundStrategy(new SyncRoundOptions
            {
                SampleFraction = config.SampleFraction,
                QuorumFraction = config.QuorumFraction,
                MinUpdates = config.MinUpdates,
                Deadline = config.RoundDeadline,
                Seed = config.Seed,
            }, server),
            FederationMode.FedBuff => new FedBuffStrategy(config.BufferSize, asyncOptions, server),
            FederationMode.FedAsync => new FedAsyncStrategy(config.MixingRate, asyncOptions, server),
            FederationMode.FedFix => new FedFixStrategy(config.AggregationPeriod, asyncOptions, server),
            _ => throw new ArgumentException($"Mode {config.Mode} is not a federation mode", nameof(config)),
        };
    }

    /// <summary>FedMM (algorithms.md §5) in synchronous rounds; α resolved for the federation's codec (α ≤ 1/(1 + ω)).
    /// FedMM and FAR-SIGN aggregate by their own rules: <see cref="FederationConfig.Rule"/> does not apply to them.</summary>
    private static FedMMStrategy FedMM(FederationConfig config, AlgorithmSpec spec, int dimension, ServerState? state, ModelShape? shape)
    {
        if (config.Mode != FederationMode.Sync) throw new ArgumentException($"fedmm runs in synchronous rounds, not {config.Mode}.", nameof(config));
        var options = FedMMOptions.Parse(spec);
        if (!spec.Parameters.ContainsKey("seed")) options = options with { Seed = config.Seed };
        var codec = UpdateCodecs.Parse(config.Codec);
        if (options.Surrogate == SurrogateKind.Dictionary)
            throw new ArgumentException("fedmm: the dictionary surrogate runs in `fededge bench fedmm`, not on ONNX models.", nameof(config));
        var surrogate = options.CreateSurrogate(dimension, shape?.FeatureCount ?? 0, shape?.ClassCount ?? 0);
        var rounds = new SyncRoundOptions { QuorumFraction = config.QuorumFraction, MinUpdates = config.MinUpdates, Deadline = config.RoundDeadline, Seed = config.Seed };
        return new FedMMStrategy(options, surrogate, options.ResolveAlpha(codec, surrogate.StatisticLength), rounds, state);
    }

    /// <summary>FAR-SIGN (algorithms.md §4): every answer message a version; the work seeds derive from the configured seed.</summary>
    private static FarSignStrategy FarSign(FederationConfig config, AlgorithmSpec spec, int dimension, ServerState? state)
    {
        if (config.Mode != FederationMode.FedAsync) throw new ArgumentException($"far-sign is fully asynchronous (mode fedasync), not {config.Mode}.", nameof(config));
        var parameters = new Dictionary<string, string>(spec.Parameters, StringComparer.Ordinal);
        parameters.TryAdd("seed", config.Seed.ToString(CultureInfo.InvariantCulture));
        return new FarSignStrategy(FarSignOptions.FromParameters(parameters), dimension, state);
    }

    /// <summary>The first problem that would stop <see cref="Create"/>, or null.</summary>
    public static string? Validate(FederationConfig config, int dimension = 1, ModelShape? shape = null)
    {
        try
        {
            Create(config, dimension, shape: shape);
            return null;
        }
        catch (ArgumentException e)
        {
            return e.Message;
        }
    }

    private static ServerAggregatorOptions ServerOptions(FederationConfig config)
    {
        var p = config.RuleParameters;
        int? Int(string key) => p.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : null;
        double? Double(string key) => p.TryGetValue(key, out var v) ? double.Parse(v, CultureInfo.InvariantCulture) : null;
        return new ServerAggregatorOptions
        {
            Rule = config.Rule,
            Parameters = new RuleParameters
            {
                F = config.ByzantineCount,
                M = Int("m"),
                BucketSize = Int("bucket") ?? 0,
                Seed = config.Seed,
                Tau = Double("tau") ?? 10.0,
                Iterations = Int("iters"),
                Nu = Double("nu") ?? 0.1,
            },
            ServerLearningRate = config.ServerLearningRate,
            ServerOptimizer = config.ServerOptimizer,
            Momentum = config.ServerMomentum,
            Beta1 = config.ServerMomentum,
            Estimate = !config.UsesServerEstimate ? ServerEstimate.None
                : config.EstimateAggregation == "messages" ? ServerEstimate.Shared : ServerEstimate.PerDevice,
        };
    }

    private static IStalenessWeighting? Staleness(string spec)
    {
        if (string.IsNullOrEmpty(spec)) return null;
        return StalenessWeightings.TryParse(spec, out var weighting, out var problem) ? weighting : throw new ArgumentException(problem);
    }
}
