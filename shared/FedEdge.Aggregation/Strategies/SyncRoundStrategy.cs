using System.Globalization;

namespace FedEdge.Aggregation.Strategies;

/// <summary>Who a synchronous round asks and when it closes.</summary>
public sealed record SyncRoundOptions
{
    /// <summary>Fraction of the available devices sampled per round (Flower's fraction_fit).</summary>
    public double SampleFraction { get; init; } = 1.0;

    /// <summary>Share of the sampled devices whose answers close the round early (1 = all).</summary>
    public double QuorumFraction { get; init; } = 1.0;

    /// <summary>Updates a round needs to be aggregated, early or at its deadline.</summary>
    public int MinUpdates { get; init; } = 1;

    /// <summary>The round closes at this deadline with what arrived (at least <see cref="MinUpdates"/>), else waits as long again.</summary>
    public TimeSpan Deadline { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Seed of the sampling; the round number is mixed in, so rounds differ but reruns agree.</summary>
    public int Seed { get; init; }
}

/// <summary>
/// Synchronous rounds (FedAvg, McMahan et al. 2017, with any rule): each version samples ⌈q·n⌉ of the available
/// devices, takes one update per sampled device trained on the current version, and closes once the quorum answered
/// (with at least <see cref="SyncRoundOptions.MinUpdates"/> updates) or at the deadline. Rows weigh their sample
/// counts (the FedAvg mean Σ n_i Δ_i / Σ n_i).
/// <example>q = 0.5 of 4 devices, quorum 1: 2 sampled, both must answer; updates [1] (n = 1) and [4] (n = 3) under
/// the mean give x += 3.25.</example>
/// </summary>
public sealed class SyncRoundStrategy(SyncRoundOptions options, ServerAggregator server) : FederationStrategy(server)
{
    public SyncRoundOptions Options { get; } = options ?? throw new ArgumentNullException(nameof(options));

    protected override string Mode => Options.SampleFraction < 1
        ? string.Create(CultureInfo.InvariantCulture, $"sync(q = {Options.SampleFraction})")
        : "sync";

    protected override bool OneAnswerPerDevice => true;

    public override VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(available);
        if (available.Count == 0)
        {
            return null;
        }

        long version = context.CurrentVersion + 1;
        int wanted = Math.Clamp((int)Math.Ceiling(Options.SampleFraction * available.Count), 1, available.Count);
        var order = available.Select(d => d.DeviceId).Order(StringComparer.Ordinal).ToArray();
        new Random(HashCode.Combine(Options.Seed, version)).Shuffle(order);
        var sampled = order.Take(wanted).ToArray();
        int quorum = Math.Max(1, (int)Math.Ceiling(Options.QuorumFraction * wanted));
        return new VersionPlan(version, sampled, quorum, context.Now + Options.Deadline, context.FleetSize) { Model = context.Model, Period = Options.Deadline };
    }

    protected override Refusal? Admit(in DeviceContribution contribution, VersionPlan plan, out float scale, out float weight)
    {
        scale = 1f;
        weight = (float)Math.Max(1.0, contribution.SampleCount);
        long staleness = Staleness(contribution, plan);
        return staleness > 0
            ? new Refusal(RefusalKind.TooStale, $"base v{contribution.BaseVersion} is {staleness} version(s) behind v{plan.BaseVersion}")
            : null;
    }

    protected override bool IsReady(IVersionAggregation version) =>
        version.Count + version.Declines >= version.Plan.Quorum && version.Count >= Options.MinUpdates;

    protected override DeadlineDecision AtDeadline(IVersionAggregation version) =>
        version.Count >= Options.MinUpdates ? DeadlineDecision.Aggregate : DeadlineDecision.Extend;
}
