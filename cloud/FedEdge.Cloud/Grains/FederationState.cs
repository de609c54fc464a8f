using FedEdge.Cloud.Abstractions;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// A federation's hot persisted state: configuration, current version and SHA-256, the open round, counters and
/// liveness. Written when a version is committed, a round opens or a device's liveness changes, not per accepted
/// update: the pending updates live in the update log (<see cref="Storage.IUpdateLog"/>), the global parameters in the
/// model store (by SHA-256), and the round history and de-duplication window in <see cref="FederationHistoryState"/>.
/// </summary>
[GenerateSerializer]
public sealed class FederationState
{
    [Id(0)] public FederationConfig? Config { get; set; }
    [Id(1)] public long ModelVersion { get; set; }
    [Id(2)] public string? ModelSha256 { get; set; }
    [Id(3)] public int ParameterCount { get; set; }
    [Id(4)] public long ModelBytes { get; set; }
    [Id(5)] public bool Finished { get; set; }
    /// <summary>Sync: devices sampled for the open round (empty while no round is open).</summary>
    [Id(6)] public List<string> Sampled { get; set; } = [];
    /// <summary>Sync: accepted contributions that close the open round early.</summary>
    [Id(7)] public int Quorum { get; set; }
    [Id(8)] public DateTimeOffset? RoundOpenedAt { get; set; }
    [Id(9)] public DateTimeOffset? RoundDeadline { get; set; }
    [Id(11)] public HashSet<string> Live { get; set; } = [];
    /// <summary>Updates aggregated into committed versions (a status adds the pending ones).</summary>
    [Id(12)] public long AcceptedTotal { get; set; }
    [Id(13)] public Dictionary<RejectionReason, long> RejectedTotal { get; set; } = [];
    /// <summary>Cluster models only: retired by the cluster directory (no devices left); takes no updates.</summary>
    [Id(17)] public bool Retired { get; set; }
    /// <summary>Cluster models only: P_c(y) announced with the current version, so a restart republishes it too.</summary>
    [Id(18)] public float[]? LabelDistribution { get; set; }
    /// <summary>The strategy's server state (<see cref="FedEdge.Aggregation.Strategies.ServerState"/>): each vector's
    /// SHA-256 in the model store (float32 little-endian), written with the version that changed it.</summary>
    [Id(19)] public Dictionary<string, string> ServerState { get; set; } = [];
    /// <summary>The last versions committed, newest last: their model's SHA-256 (FedAsync mixes with the model an
    /// update was trained from) and when they were committed (FedFix's training time τ_i).</summary>
    [Id(20)] public List<VersionRecord> RecentVersions { get; set; } = [];
}

/// <summary>A committed version: its model in the store and when it was committed.</summary>
[GenerateSerializer, Immutable]
public sealed record VersionRecord(
    [property: Id(0)] long Version,
    [property: Id(1)] string ModelSha256,
    [property: Id(2)] DateTimeOffset CommittedAt);

/// <summary>
/// A federation's cold persisted state: changed only when a version is committed, so written once per version, not
/// once per update. Written <em>before</em> the hot state of the same commit (see <see cref="FederationHistory"/>).
/// </summary>
[GenerateSerializer]
public sealed class FederationHistoryState
{
    /// <summary>The version whose commit wrote this record last; ahead of the hot state's version only after a crash
    /// between the two writes of a commit.</summary>
    [Id(0)] public long ModelVersion { get; set; }
    /// <summary>Completed aggregations, oldest first (at most <see cref="FederationHistory.RoundLimit"/>).</summary>
    [Id(1)] public List<RoundSummary> Rounds { get; set; } = [];
    /// <summary>"device/update" keys of the most recently aggregated updates, oldest first (durable de-duplication:
    /// device grains write their own windows lazily).</summary>
    [Id(2)] public List<string> RecentlyAggregated { get; set; } = [];
}

/// <summary>What the federation remembers of an accepted update; the update itself is a <see cref="StoredUpdate"/>.</summary>
[GenerateSerializer, Immutable]
public sealed record PendingUpdate(
    [property: Id(0)] string DeviceId,
    [property: Id(1)] string UpdateId,
    [property: Id(2)] long BaseVersion,
    [property: Id(3)] long SampleCount,
    [property: Id(4)] int Bytes,
    [property: Id(5)] double? TrainLoss,
    [property: Id(6)] DateTimeOffset ReceivedAt);

/// <summary>An accepted update's signed envelope in a grain-storage record (<see cref="Storage.GrainStorageUpdateLog"/>).</summary>
[GenerateSerializer]
public sealed class StoredUpdate
{
    [Id(0)] public byte[] Envelope { get; set; } = [];
}
