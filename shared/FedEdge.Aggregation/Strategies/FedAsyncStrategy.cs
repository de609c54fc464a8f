using System.Globalization;
using System.Numerics.Tensors;
using FedEdge.Aggregation.Asynchronous;

namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// FedAsync (Xie, Koyejo, Gupta, "Asynchronous Federated Optimization", 2019): every update is a version,
/// x ← (1 − α_t)·x + α_t·x_new with x_new = x_τ + Δ the device's model (trained from version τ) and
/// α_t = α·s(τ), s polynomial (τ + 1)^(−a), a = 0.5, by default. Written as the server step x ← x + η·α_t·(x_new − x)
/// with η = 1. One update per version: no robust rule applies (use FedBuff for that).
/// <example>α = 0.5, s constant, x = [0], device trained from x_τ = [0] with Δ = [2]: x = [1].</example>
/// </summary>
public sealed class FedAsyncStrategy : FederationStrategy
{
    private readonly IStalenessWeighting _staleness;

    public FedAsyncStrategy(double alpha, AsyncOptions options, ServerAggregator server) : base(server)
    {
        Alpha = alpha is > 0 and <= 1 ? alpha : throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must lie in (0, 1].");
        Options = options ?? throw new ArgumentNullException(nameof(options));
        if (server.Options.Rule != "mean")
        {
            throw new ArgumentException($"FedAsync mixes one update per version, so '{server.Options.Rule}' has nothing to be robust over; use FedBuff with a buffer of K updates.", nameof(server));
        }

        _staleness = options.Staleness ?? new PolynomialStaleness(0.5);
    }

    /// <summary>α, the mixing rate of a fresh update.</summary>
    public double Alpha { get; }

    public AsyncOptions Options { get; }

    protected override string Mode => string.Create(CultureInfo.InvariantCulture, $"fedasync(α = {Alpha}, τ ≤ {Options.MaxStaleness})");

    /// <summary>x_new = x_τ + Δ needs the base version's model.</summary>
    public override int ModelHistory => Options.MaxStaleness;

    public override bool AddsEncodedUpdates => false;

    public override VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available) =>
        new(context.CurrentVersion + 1, null, 1, null, context.FleetSize) { Model = context.Model };

    protected override int Capacity(VersionPlan plan) => 1;

    protected override Refusal? Admit(in DeviceContribution contribution, VersionPlan plan, out float scale, out float weight)
    {
        weight = 1f;
        scale = 0f;
        if (Options.RefuseTooStale(contribution, plan, out long staleness) is { } tooStale)
        {
            return tooStale;
        }

        if (staleness > 0 && contribution.BaseModel.Length != plan.Model.Length)
        {
            return new Refusal(RefusalKind.TooStale, $"the model of base v{contribution.BaseVersion} is no longer kept");
        }

        scale = (float)(Alpha * _staleness.Weight((int)staleness));
        return null;
    }

    protected override bool TransformsRows => true;

    /// <summary>The row FedAsync mixes towards: x_new − x = Δ + (x_τ − x).</summary>
    protected override void TransformRow(in DeviceContribution contribution, VersionPlan plan, Span<float> row)
    {
        if (contribution.BaseModel.IsEmpty)
        {
            contribution.Values.Span.CopyTo(row);
            return;
        }

        TensorPrimitives.Subtract(contribution.BaseModel.Span, plan.Model.Span, row);
        TensorPrimitives.Add(row, contribution.Values.Span, row);
    }

    protected override bool IsReady(IVersionAggregation version) => version.Count >= 1;

    protected override bool IsFull(IVersionAggregation version) => version.Count >= 1;
}
