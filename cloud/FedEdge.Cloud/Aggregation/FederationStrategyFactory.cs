using System.Globalization;
using FedEdge.Aggregation;
using FedEdge.Aggregation.Asynchronous;
using FedEdge.Aggregation.Strategies;
using FedEdge.Cloud.Abstractions;

namespace FedEdge.Cloud.Aggregation;

/// <summary>The strategy a <see cref="FederationConfig"/> names: its mode (sync, FedBuff, FedAsync, FedFix) over one
/// <see cref="ServerAggregator"/> (rule, EF21 estimates, server optimizer).</summary>
public static class FederationStrategyFactory
{
    /// <summary>Builds the strategy for <paramref name="dimension"/> parameters; an <see cref="ArgumentException"/>
    /// names what in <paramref name="config"/> cannot run.</summary>
    public static IFederationStrategy Create(FederationConfig config, int dimension, ServerState? state = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Validate() is { } problem) throw new ArgumentException(problem, nameof(config));
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

    /// <summary>The first problem that would stop <see cref="Create"/>, or null.</summary>
    public static string? Validate(FederationConfig config, int dimension = 1)
    {
        try
        {
            Create(config, dimension);
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
