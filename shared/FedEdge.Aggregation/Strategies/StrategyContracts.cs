namespace FedEdge.Aggregation.Strategies;

/// <summary>What a device sends back for a round; a strategy accepts one kind.</summary>
public enum ContributionKind
{
    /// <summary>A dense update Δ_i = x_i − x (float32, d coordinates), decoded from any codec.</summary>
    ModelUpdate,

    /// <summary>Packed sign bits of Δ_i, 1 bit per coordinate (layout: <see cref="Rules.SignMajorityVoteAccumulator"/>).</summary>
    PackedSigns,

    /// <summary>Surrogate statistics S_i (FedMM, algorithms.md §5): aggregated as statistics, then mapped θ = T(Ŝ).</summary>
    SurrogateStatistics,

    /// <summary>One bit per work item (FAR-SIGN, algorithms.md §4): the sign of a directional derivative along the
    /// direction generated from the work item's seed.</summary>
    DirectionalSigns,
}

/// <summary>A device the fleet registry offers for selection.</summary>
public sealed record DeviceDescriptor(string DeviceId, long SampleCount = 0, IReadOnlyDictionary<string, string>? Properties = null);

/// <summary>The state a round starts from.</summary>
/// <param name="Round">Round number (or, for asynchronous strategies, the work-batch number).</param>
/// <param name="ModelVersion">Version of the global model the devices will receive.</param>
public sealed record RoundContext(long Round, long ModelVersion);

/// <summary>
/// What one device is asked to do: the contribution it must return, its training configuration (Flower's
/// FitIns config: local epochs, learning rate, batch size, codec…), and for FAR-SIGN the work-item seeds.
/// </summary>
public sealed record DeviceAssignment(
    string DeviceId,
    ContributionKind Contribution,
    IReadOnlyDictionary<string, string> Config,
    IReadOnlyList<ulong>? WorkItemSeeds = null);

/// <summary>The plan for a round: who takes part and with what; the round can close once
/// <see cref="MinimumContributions"/> accepted contributions arrived.</summary>
public sealed record RoundPlan(RoundContext Context, IReadOnlyList<DeviceAssignment> Assignments, int MinimumContributions);

/// <summary>
/// One device's answer. Exactly one payload is set, matching <see cref="Kind"/>: <see cref="Values"/> for
/// updates and statistics, <see cref="Bits"/> for packed signs and directional signs (then
/// <see cref="WorkItemSeeds"/> says which bit answers which work item). A readonly struct over memory the caller
/// owns until Submit returns, so submitting allocates nothing.
/// </summary>
public readonly record struct DeviceContribution(
    string DeviceId,
    ContributionKind Kind,
    ReadOnlyMemory<float> Values,
    ReadOnlyMemory<byte> Bits,
    double Weight,
    long BaseModelVersion,
    ReadOnlyMemory<ulong> WorkItemSeeds = default)
{
    public static DeviceContribution Update(string deviceId, ReadOnlyMemory<float> update, double sampleCount, long baseVersion) =>
        new(deviceId, ContributionKind.ModelUpdate, update, default, sampleCount, baseVersion);

    public static DeviceContribution Signs(string deviceId, ReadOnlyMemory<byte> packedSigns, long baseVersion) =>
        new(deviceId, ContributionKind.PackedSigns, default, packedSigns, 1.0, baseVersion);

    public static DeviceContribution Statistics(string deviceId, ReadOnlyMemory<float> statistics, double weight, long baseVersion) =>
        new(deviceId, ContributionKind.SurrogateStatistics, statistics, default, weight, baseVersion);

    public static DeviceContribution DirectionalSigns(string deviceId, ReadOnlyMemory<ulong> seeds, ReadOnlyMemory<byte> packedAnswers, long baseVersion) =>
        new(deviceId, ContributionKind.DirectionalSigns, default, packedAnswers, 1.0, baseVersion, seeds);
}

/// <summary>Whether a contribution was taken into the round, and if not, why.</summary>
public readonly record struct SubmitResult(bool Accepted, string? Reason)
{
    public static SubmitResult Ok => new(true, null);

    public static SubmitResult Refused(string reason) => new(false, reason);
}

/// <summary>A refused contribution, kept for the round report.</summary>
public sealed record RefusedContribution(string DeviceId, string Reason);

/// <summary>What closing a round produced.</summary>
/// <param name="Accepted">Contributions aggregated.</param>
/// <param name="UpdateNorm">‖x_new − x_old‖ of the global model.</param>
public sealed record RoundResult(RoundContext Context, int Accepted, IReadOnlyList<RefusedContribution> Refused, double UpdateNorm);

/// <summary>A device's evaluation of the global model on its local data.</summary>
public sealed record DeviceEvaluation(string DeviceId, long SampleCount, double Loss, IReadOnlyDictionary<string, double>? Metrics = null);

/// <summary>Sample-weighted evaluation over devices (Flower's weighted_loss_avg; metrics likewise).</summary>
public sealed record EvaluationSummary(long Round, int Devices, long Samples, double Loss, IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// One round in progress: contributions are validated and taken as they arrive, then <see cref="Complete"/>
/// turns them into the next global model. Not thread-safe: the owning grain serialises calls.
/// </summary>
public interface IRoundAggregation
{
    RoundPlan Plan { get; }

    int AcceptedCount { get; }

    /// <summary>Validates and takes a contribution; a bad or unexpected one is refused with a reason, never thrown.</summary>
    SubmitResult Submit(in DeviceContribution contribution);

    /// <summary>Writes the next global model over <paramref name="globalModel"/> (in: the current one).</summary>
    RoundResult Complete(Span<float> globalModel);
}

/// <summary>
/// The seam every aggregation strategy implements, after Flower's Strategy: configure the round (which devices,
/// what they get), aggregate what comes back, evaluate. Parameter-averaging rules, the sign vote, FedMM's surrogate
/// statistics and FAR-SIGN's one-bit work items all fit it: they differ in <see cref="Contribution"/>, in the
/// assignments (FAR-SIGN hands out seeds) and in how Complete maps the accumulated state to the model
/// (FedMM applies θ = T(Ŝ)).
/// </summary>
public interface IFederatedStrategy
{
    string Name { get; }

    ContributionKind Contribution { get; }

    RoundPlan ConfigureRound(RoundContext context, IReadOnlyList<DeviceDescriptor> available);

    IRoundAggregation BeginAggregation(RoundPlan plan, int dimension);

    EvaluationSummary AggregateEvaluation(long round, IReadOnlyList<DeviceEvaluation> evaluations);
}
