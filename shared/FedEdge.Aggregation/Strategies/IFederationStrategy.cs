namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// The whole life of a federation, after Flower's <c>Strategy</c>: what the devices are asked to do for the next model
/// version (<see cref="Plan"/>), what a contribution is and when the version is ready (the
/// <see cref="IVersionAggregation"/> begun for the plan: it admits contributions with their weights and says when it
/// is ready or what its deadline does), how the next model is computed (<see cref="IVersionAggregation.Complete"/>,
/// through the strategy's <see cref="ServerAggregator"/>: rule, server step) and what must survive a restart
/// (<see cref="State"/>). Synchronous rounds, FedBuff, FedAsync and FedFix implement it (algorithms.md §3); the host
/// (the federation grain, or a test) only persists, publishes and keeps time.
/// </summary>
public interface IFederationStrategy
{
    /// <summary>What runs, e.g. "fedbuff(K=10) trimmed-mean(f=2) fedadam".</summary>
    string Name { get; }

    /// <summary>What a device sends back.</summary>
    ContributionKind Contribution { get; }

    /// <summary>
    /// Whether contributions may arrive still encoded (<see cref="DeviceContribution.Encoded"/>): the aggregation only
    /// sums them (a streaming mean), so the host need not decode to d floats.
    /// </summary>
    bool AddsEncodedUpdates { get; }

    /// <summary>Whether a device answers a version at most once and its decline (a FedDAA cluster it has no samples
    /// for) counts towards the version's quorum (sync rounds); elsewhere a decline changes nothing.</summary>
    bool CountsDeclines { get; }

    /// <summary>Length of the vector a device sends: d for model updates, FedMM's statistic length m, FAR-SIGN's
    /// number of directions K per answer message.</summary>
    int ContributionLength { get; }

    /// <summary>Versions of past global models a contribution needs (FedAsync mixes with the model the device
    /// trained from); 0 when only the current model is used.</summary>
    int ModelHistory { get; }

    /// <summary>Who is asked and when the next version closes; null when nobody is available to ask (sync).</summary>
    VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available);

    /// <summary>A fresh aggregation of the next version for <paramref name="plan"/>.</summary>
    IVersionAggregation Begin(VersionPlan plan);

    /// <summary>The server state that outlives a version (optimizer moments, clipping centre, EF21 estimates),
    /// persisted by the host after each version and restored before any contribution is replayed.</summary>
    ServerState State { get; }
}

/// <summary>A strategy whose devices need more than the parameters: FedMM publishes its aggregated statistics Ŝ with every
/// model (devices form S_i − Ŝ − V_i), FAR-SIGN a work seed per version (devices regenerate their directions from it).</summary>
public interface IPublishesWithModel
{
    /// <summary>Statistics published with the current model (empty: none).</summary>
    ReadOnlyMemory<float> PublishedStatistics { get; }

    /// <summary>The work seed of <paramref name="version"/> (0: none).</summary>
    ulong WorkSeed(long version);

    /// <summary>The algorithm spec announced with the current model, with what devices must use exactly as the server
    /// does (FedMM's α and this version's participation threshold); empty: the configuration's own.</summary>
    string AnnouncedAlgorithm { get; }
}

/// <summary>What a device sends back; a strategy accepts one kind.</summary>
public enum ContributionKind
{
    /// <summary>A dense update Δ_i = x_i − x (float32, d coordinates), decoded from any codec.</summary>
    ModelUpdate,

    /// <summary>The signs of Δ_i (signSGD with majority vote): the vote reads only sign(Δ_i).</summary>
    PackedSigns,

    /// <summary>Surrogate statistics S_i (FedMM, algorithms.md §5): aggregated as statistics, then mapped θ = T(Ŝ).</summary>
    SurrogateStatistics,

    /// <summary>One bit per work item (FAR-SIGN, algorithms.md §4): the sign of a directional derivative along the
    /// direction generated from the work item's seed.</summary>
    DirectionalSigns,
}

/// <summary>A device the fleet offers for selection.</summary>
public sealed record DeviceDescriptor(string DeviceId, long SampleCount = 0);

/// <summary>Where the federation stands when the next version is planned.</summary>
/// <param name="CurrentVersion">The version the devices hold (the plan builds <c>CurrentVersion + 1</c>).</param>
/// <param name="Now">The host's clock (<see cref="TimeProvider"/>).</param>
/// <param name="FleetSize">n, the devices registered in the federation (EF21's k/n, FedFix's p_i = 1/n).</param>
public sealed record VersionContext(long CurrentVersion, DateTimeOffset Now, int FleetSize)
{
    /// <summary>The current global model x (FedAsync needs it to mix).</summary>
    public ReadOnlyMemory<float> Model { get; init; }
}

/// <summary>
/// The plan of the next version: who may contribute (null: any device of the fleet), how many answers close it
/// early, and its deadline (sync rounds, FedFix's period).
/// </summary>
public sealed record VersionPlan(
    long Version,
    IReadOnlyList<string>? Participants,
    int Quorum,
    DateTimeOffset? Deadline,
    int FleetSize)
{
    /// <summary>How long the plan runs before its deadline (null: no deadline); a deadline that extends waits this long again.</summary>
    public TimeSpan? Period { get; init; }

    /// <summary>The global model of <see cref="BaseVersion"/> (FedAsync mixes towards x_τ + Δ from it).</summary>
    public ReadOnlyMemory<float> Model { get; init; }

    /// <summary>The version the devices train from.</summary>
    public long BaseVersion => Version - 1;

    /// <summary>What every strategy refuses first: a contribution without a device id, or on a base version never
    /// published. Null when neither applies.</summary>
    public Refusal? CheckOrigin(in DeviceContribution contribution) =>
        contribution.DeviceId is null ? new Refusal(RefusalKind.Invalid, "the contribution has no device id")
        : contribution.BaseVersion > BaseVersion ? new Refusal(RefusalKind.Invalid, $"base v{contribution.BaseVersion} was never published (current v{BaseVersion})")
        : null;
}

/// <summary>
/// One device's answer, over memory the caller owns until <see cref="IVersionAggregation.Offer"/> returns.
/// A dense <see cref="Values"/> (Δ_i), or an <see cref="Encoded"/> payload for a strategy that
/// <see cref="IFederationStrategy.AddsEncodedUpdates"/>, or a decline (a FedDAA cluster round the device has no
/// samples for: it answers, contributes nothing).
/// </summary>
public readonly record struct DeviceContribution(
    string DeviceId,
    long BaseVersion,
    double SampleCount,
    ReadOnlyMemory<float> Values,
    IAccumulableUpdate? Encoded = null,
    bool IsDecline = false)
{
    /// <summary>FedAsync: the global model of <see cref="BaseVersion"/> (x_τ, so that x_new = x_τ + Δ).</summary>
    public ReadOnlyMemory<float> BaseModel { get; init; }

    /// <summary>FedFix: time from the publication of the base version to the contribution's arrival (τ_i).</summary>
    public TimeSpan TrainingTime { get; init; }

    /// <summary>FAR-SIGN (<see cref="ContributionKind.DirectionalSigns"/>): the packed sign answers as they came off the
    /// wire (<see cref="SignedDirections.SignAnswerPacket"/>: K in a 2-byte header, then one bit per answer); the
    /// strategy reads only the device id, the base version and these bits.</summary>
    public ReadOnlyMemory<byte> Answers { get; init; }

    public static DeviceContribution Update(string deviceId, ReadOnlyMemory<float> update, double sampleCount, long baseVersion) =>
        new(deviceId, baseVersion, sampleCount, update);

    /// <summary>A FAR-SIGN answer message: <paramref name="packet"/> answers the directions of
    /// <paramref name="baseVersion"/>'s work seed for <paramref name="deviceId"/>.</summary>
    public static DeviceContribution SignAnswers(string deviceId, ReadOnlyMemory<byte> packet, long baseVersion) =>
        new(deviceId, baseVersion, 0, default) { Answers = packet };

    public static DeviceContribution Decline(string deviceId, long baseVersion) =>
        new(deviceId, baseVersion, 0, default, IsDecline: true);
}

/// <summary>Why a contribution was not taken.</summary>
public enum RefusalKind
{
    /// <summary>Computed from a model too many versions behind.</summary>
    TooStale,

    /// <summary>Not asked for this version, or already answered it.</summary>
    NotExpected,

    /// <summary>Wrong shape, non-finite, or otherwise unusable.</summary>
    Invalid,
}

/// <summary>A refused contribution: what kind of refusal and a reason a person can act on.</summary>
public sealed record Refusal(RefusalKind Kind, string Reason);

/// <summary>What the deadline of a plan does.</summary>
public enum DeadlineDecision
{
    /// <summary>Aggregate what arrived.</summary>
    Aggregate,

    /// <summary>Too little arrived: wait one more period (sync: the round deadline; FedFix: Δt).</summary>
    Extend,
}

/// <summary>
/// The next version in progress: contributions are admitted (weighted by the strategy) as they arrive, then
/// <see cref="Complete"/> writes the next global model. Not thread-safe: the host serialises calls.
/// </summary>
public interface IVersionAggregation
{
    VersionPlan Plan { get; }

    /// <summary>Contributions taken (declines not counted).</summary>
    int Count { get; }

    /// <summary>Declines taken (they count towards a sync round's quorum only).</summary>
    int Declines { get; }

    /// <summary>Whether the version can be aggregated now, without waiting for its deadline.</summary>
    bool IsReady { get; }

    /// <summary>Whether the aggregation has room for another contribution (a full FedBuff buffer has none).</summary>
    bool IsFull { get; }

    /// <summary>Takes a contribution; null when taken, else why not (the aggregation is then unchanged).</summary>
    Refusal? Offer(in DeviceContribution contribution);

    /// <summary>What reaching <see cref="VersionPlan.Deadline"/> does with what arrived.</summary>
    DeadlineDecision AtDeadline();

    /// <summary>Writes the next global model over <paramref name="model"/> (in: the current one) and updates
    /// <see cref="IFederationStrategy.State"/>. Throws when nothing usable was taken or the result is not finite.</summary>
    VersionResult Complete(Span<float> model);
}

/// <summary>What completing a version produced.</summary>
/// <param name="Contributions">Contributions aggregated.</param>
public sealed record VersionResult(long Version, int Contributions);
