using System.Globalization;
using FedEdge.Aggregation.Asynchronous;

namespace FedEdge.Aggregation.Strategies;

/// <summary>Staleness handling shared by the asynchronous modes.</summary>
public sealed record AsyncOptions
{
    /// <summary>Updates more than this many versions behind are refused (NVFlare's edge example uses 100).</summary>
    public int MaxStaleness { get; init; } = 100;

    /// <summary>The discount s(τ); null for the mode's default (FedBuff 1/√(1+τ), FedAsync polynomial a = 0.5, FedFix none).</summary>
    public IStalenessWeighting? Staleness { get; init; }

    /// <summary>The refusal of a contribution more than <see cref="MaxStaleness"/> versions behind <paramref name="plan"/>'s base, or null.</summary>
    public Refusal? RefuseTooStale(in DeviceContribution contribution, VersionPlan plan, out long staleness)
    {
        ArgumentNullException.ThrowIfNull(plan);
        staleness = plan.BaseVersion - contribution.BaseVersion;
        return staleness > MaxStaleness
            ? new Refusal(RefusalKind.TooStale, $"base v{contribution.BaseVersion} is {staleness} version(s) behind v{plan.BaseVersion}, above the cut-off {MaxStaleness}")
            : null;
    }
}

/// <summary>
/// FedBuff (Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation", AISTATS 2022): any device
/// sends Δ from the version it holds; the server buffers s(τ)·Δ, s(τ) = 1/√(1 + τ), and after K updates takes
/// x ← x + η·rule(s(τ_1)Δ_1, …, s(τ_K)Δ_K). With the mean this is the paper's Δ̄/K; a robust rule replaces the mean
/// over the same K rows, f capped to what K rows tolerate (<see cref="ServerAggregator.EffectiveF"/>).
/// <example>K = 2, η = 1, mean: Δ = [2] at τ = 0 and Δ = [4] at τ = 3 give x += (2 + 4/2)/2 = 2.</example>
/// </summary>
public sealed class FedBuffStrategy : FederationStrategy
{
    private readonly IStalenessWeighting _staleness;

    public FedBuffStrategy(int bufferSize, AsyncOptions options, ServerAggregator server) : base(server)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferSize);
        Options = options ?? throw new ArgumentNullException(nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxStaleness);
        BufferSize = bufferSize;
        _staleness = options.Staleness ?? new FedBuffStaleness();
    }

    /// <summary>K, updates per version.</summary>
    public int BufferSize { get; }

    public AsyncOptions Options { get; }

    protected override string Mode => string.Create(CultureInfo.InvariantCulture, $"fedbuff(K = {BufferSize}, τ ≤ {Options.MaxStaleness})");

    public override VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available) =>
        new(context.CurrentVersion + 1, null, BufferSize, null, context.FleetSize) { Model = context.Model };

    protected override int Capacity(VersionPlan plan) => BufferSize;

    protected override Refusal? Admit(in DeviceContribution contribution, VersionPlan plan, out float scale, out float weight)
    {
        weight = 1f;
        scale = 0f;
        if (Options.RefuseTooStale(contribution, plan, out long staleness) is { } tooStale)
        {
            return tooStale;
        }

        scale = (float)_staleness.Weight((int)staleness);
        return null;
    }

    protected override bool IsReady(IVersionAggregation version) => version.Count >= BufferSize;

    protected override bool IsFull(IVersionAggregation version) => version.Count >= BufferSize;
}
