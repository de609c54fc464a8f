using System.Globalization;
using FedEdge.Aggregation.Asynchronous;

namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// FedFix (Fraboni, Vidal, Kameni, Lorenzi, "A General Theory for Federated Optimization with Asynchronous and
/// Heterogeneous Clients Updates", JMLR 2023): the server aggregates every Δt over the devices that returned, and a
/// device still training keeps going. A contribution that took τ_i since its base version was published weighs
/// d_i = ⌈τ_i/Δt⌉·p_i, p_i = 1/n: x ← x + η·Σ_i d_i·Δ_i, written as (k/n)·rule(⌈τ_1/Δt⌉Δ_1, …, ⌈τ_k/Δt⌉Δ_k) so that
/// a robust rule replaces the mean over the same rows.
/// <example>Δt = 10 s, n = 4, two updates [1] after 5 s and [2] after 25 s: x += (1·1 + 3·2)/4 = 1.75.</example>
/// </summary>
public sealed class FedFixStrategy(TimeSpan period, AsyncOptions options, ServerAggregator server) : FederationStrategy(server)
{
    /// <summary>Δt, the aggregation period.</summary>
    public TimeSpan Period { get; } = period > TimeSpan.Zero ? period : throw new ArgumentOutOfRangeException(nameof(period), period, "Δt must be positive.");

    public AsyncOptions Options { get; } = options ?? throw new ArgumentNullException(nameof(options));

    protected override string Mode => string.Create(CultureInfo.InvariantCulture, $"fedfix(Δt = {Period.TotalSeconds} s, τ ≤ {Options.MaxStaleness})");

    public override VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available) =>
        new(context.CurrentVersion + 1, null, int.MaxValue, context.Now + Period, context.FleetSize) { Model = context.Model, Period = Period };

    protected override int Capacity(VersionPlan plan) => Math.Max(1, plan.FleetSize);

    protected override Refusal? Admit(in DeviceContribution contribution, VersionPlan plan, out float scale, out float weight)
    {
        weight = 1f;
        scale = 0f;
        if (Options.RefuseTooStale(contribution, plan, out long staleness) is { } tooStale)
        {
            return tooStale;
        }

        // ⌈τ_i/Δt⌉ ≥ 1: an update back within its first period counts once.
        scale = (float)Math.Max(1.0, FedFixWeighting.Weight(contribution.TrainingTime, Period, 1.0));
        if (Options.Staleness is { } discount)
        {
            scale *= (float)discount.Weight((int)staleness);
        }

        return null;
    }

    /// <summary>
    /// A device contributes once per period, as in the paper (a client returns once per aggregation): a fast device,
    /// or an attacker, cannot fill a period with its own rows, so the f the rule tolerates bounds the attackers' rows.
    /// </summary>
    protected override bool OneAnswerPerDevice => true;

    /// <summary>Only the period's end aggregates.</summary>
    protected override bool IsReady(IVersionAggregation version) => false;

    protected override double Factor(IVersionAggregation version) => (double)version.Count / Math.Max(version.Count, version.Plan.FleetSize);
}
