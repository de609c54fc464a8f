using Orleans.Concurrency;

namespace FedEdge.Cloud.Abstractions;

/// <summary>
/// One model of a federation: its configuration, the model versions it has published and the strategy that makes them
/// (sync rounds, FedBuff, FedAsync or FedFix over a rule and a server step; the arithmetic is the aggregation
/// library's). Key: the federation id for the federation's own model (cluster 0), or <see cref="ModelGrainKey.For"/>(federation, c)
/// for cluster model c &gt; 0 of a clustered (FedDAA) federation; both run the same machinery (versions, strategy,
/// update log, publication).
/// </summary>
public interface IFederationGrain : IGrainWithStringKey
{
    /// <summary>
    /// Creates the federation with its initial model (ONNX bytes; its float initializers are the parameters that
    /// are federated), publishes it as version 0 and opens the first round. When the federation already exists
    /// with the same configuration this resumes it; a different configuration is refused.
    /// </summary>
    Task<FederationStatus> StartAsync(FederationConfig config, Immutable<byte[]> initialModel);

    /// <summary>
    /// Offers an update that the ingestion bridge has decoded and verified. The update is persisted before
    /// this returns Accepted; a replay of an update already taken returns <see cref="RejectionReason.Replay"/>.
    /// </summary>
    Task<SubmitResult> SubmitAsync(UpdateSubmission update);

    /// <summary>Marks a device live or gone (from its status topic); sync rounds sample among live devices.</summary>
    Task SetDeviceLiveAsync(string deviceId, bool live);

    /// <summary>Acts on the open version's deadline if it has passed (called by the grain's own timer, which follows the
    /// host's <see cref="TimeProvider"/>); returns whether a version was committed.</summary>
    Task<bool> CheckDeadlineAsync();

    Task<FederationStatus> GetStatusAsync();

    /// <summary>The current global parameters and their version (for evaluation and the simulator).</summary>
    Task<GlobalModel?> GetModelAsync();

    /// <summary>The current model as ONNX bytes (throws before start); a new cluster model starts from its parent's.</summary>
    Task<Immutable<byte[]>> GetModelBytesAsync();

    /// <summary>
    /// Cluster models only: stops taking updates (they are refused as <see cref="RejectionReason.UnknownCluster"/>),
    /// drops the open round and clears the retained model topics. Used when a re-clustering left the cluster no device.
    /// </summary>
    Task RetireAsync();
}

/// <summary>Grain keys of a federation's models: the federation id for cluster 0, "{federation}/cluster/{c}" for c &gt; 0.</summary>
public static class ModelGrainKey
{
    private const string Separator = "/cluster/";

    /// <summary>
    /// The key of cluster model <paramref name="cluster"/> of <paramref name="federation"/>. Federation ids cannot hold
    /// '/', so a cluster key never names a federation.
    /// </summary>
    public static string For(string federation, int cluster)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cluster);
        return cluster == 0 ? federation : $"{federation}{Separator}{cluster.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
    }

    /// <summary>Splits a model grain key into federation and cluster (0 for the federation's own model).</summary>
    public static (string Federation, int Cluster) Parse(string key)
    {
        var at = key.IndexOf(Separator, StringComparison.Ordinal);
        if (at < 0) return (key, 0);
        var cluster = int.Parse(key.AsSpan(at + Separator.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture);
        if (cluster < 1) throw new ArgumentException($"Model grain key '{key}' names cluster {cluster}; cluster models are numbered from 1", nameof(key));
        return (key[..at], cluster);
    }
}

/// <summary>An update that passed the bridge's checks (registry, signature, size, finiteness).</summary>
[GenerateSerializer, Immutable]
public sealed record UpdateSubmission
{
    [Id(0)] public required string DeviceId { get; init; }
    [Id(1)] public required string UpdateId { get; init; }
    [Id(2)] public required long BaseVersion { get; init; }
    /// <summary>Local sample count, the FedAvg weight.</summary>
    [Id(3)] public required long SampleCount { get; init; }
    /// <summary>
    /// The decoded update Δ (device model − base model), length <see cref="Dimension"/>; null when the bridge left it
    /// in <see cref="Payload"/> for an aggregation that adds payloads straight into its sum (FedBuff).
    /// </summary>
    [Id(4)] public float[]? Delta { get; init; }
    /// <summary>d, the update's coordinates (the federation's parameter count, checked by the bridge).</summary>
    [Id(8)] public required int Dimension { get; init; }
    /// <summary>The codec spec of <see cref="Payload"/>.</summary>
    [Id(9)] public string Codec { get; init; } = "";
    /// <summary>The verified codec payload (a slice of memory the envelope's parse owns, not a copy).</summary>
    [Id(10)] public ReadOnlyMemory<byte> Payload { get; init; }
    /// <summary>The signed envelope as received (memory of the received frame, not a copy), kept in the update log so a
    /// restart can replay it.</summary>
    [Id(5)] public required ReadOnlyMemory<byte> Envelope { get; init; }
    [Id(6)] public double? TrainLoss { get; init; }
    /// <summary>Cluster model the update was trained from (0 = the federation's own model).</summary>
    [Id(7)] public int Cluster { get; init; }
}

[GenerateSerializer, Immutable]
public sealed record SubmitResult
{
    [Id(0)] public bool Accepted { get; init; }
    [Id(1)] public RejectionReason? Reason { get; init; }
    [Id(2)] public string? Detail { get; init; }

    public static SubmitResult Ok { get; } = new() { Accepted = true };

    public static SubmitResult Reject(RejectionReason reason, string detail) => new() { Reason = reason, Detail = detail };
}

public enum FederationPhase
{
    NotStarted,
    /// <summary>Sync: a round is open and collecting updates. Async: the buffer is collecting.</summary>
    Collecting,
    Finished,
    /// <summary>A cluster model that a re-clustering left without devices: takes no updates, no longer published.</summary>
    Retired,
}

[GenerateSerializer, Immutable]
public sealed record FederationStatus
{
    [Id(0)] public string Federation { get; init; } = "";
    [Id(1)] public FederationConfig? Config { get; init; }
    [Id(2)] public FederationPhase Phase { get; init; }
    /// <summary>Current global model version (0 = initial model).</summary>
    [Id(3)] public long ModelVersion { get; init; }
    [Id(4)] public string? ModelSha256 { get; init; }
    /// <summary>Updates accepted into the open round / FedBuff buffer.</summary>
    [Id(5)] public int PendingUpdates { get; init; }
    /// <summary>Sync: devices sampled for the open round.</summary>
    [Id(6)] public IReadOnlyList<string> Sampled { get; init; } = [];
    [Id(7)] public int LiveDevices { get; init; }
    [Id(8)] public long AcceptedTotal { get; init; }
    [Id(9)] public IReadOnlyDictionary<RejectionReason, long> RejectedTotal { get; init; } = new Dictionary<RejectionReason, long>();
    [Id(10)] public DateTimeOffset? RoundDeadline { get; init; }
    [Id(11)] public IReadOnlyList<RoundSummary> History { get; init; } = [];
    /// <summary>d, the number of federated parameters (the update dimension).</summary>
    [Id(12)] public int ParameterCount { get; init; }
    /// <summary>Cluster model number (0 = the federation's own model; &gt; 0 a FedDAA cluster model).</summary>
    [Id(13)] public int Cluster { get; init; }
    /// <summary>What runs: mode, rule, estimates and server step (the strategy's name).</summary>
    [Id(14)] public string Strategy { get; init; } = "";
    /// <summary>Whether the aggregation takes updates in their codec payload (a streaming mean), so the bridge need not decode them.</summary>
    [Id(15)] public bool AddsEncodedUpdates { get; init; }
    /// <summary>Length of the vector a device sends: d for updates, FedMM's statistic length, FAR-SIGN's directions per answer.</summary>
    [Id(16)] public int ContributionLength { get; init; }
    /// <summary>Bytes of the current model as published (FedMM: with its statistics).</summary>
    [Id(17)] public long PublishedModelBytes { get; init; }
}

/// <summary>One completed aggregation (a sync round or a FedBuff flush).</summary>
[GenerateSerializer, Immutable]
public sealed record RoundSummary
{
    [Id(0)] public long Version { get; init; }
    /// <summary>Updates aggregated into the version (declines of a FedDAA cluster round not included).</summary>
    [Id(1)] public int Updates { get; init; }
    /// <summary>Bytes of every answer taken, declines included.</summary>
    [Id(2)] public long BytesUp { get; init; }
    [Id(3)] public double? MeanTrainLoss { get; init; }
    [Id(4)] public DateTimeOffset CompletedAt { get; init; }
    [Id(5)] public TimeSpan Duration { get; init; }
    [Id(6)] public double MeanStaleness { get; init; }
    /// <summary>FedDAA cluster rounds: devices that declined the version (none of their samples drew it).</summary>
    [Id(7)] public int Declines { get; init; }
}

[GenerateSerializer, Immutable]
public sealed record GlobalModel
{
    [Id(0)] public long Version { get; init; }
    [Id(1)] public required float[] Parameters { get; init; }
    [Id(2)] public string Sha256 { get; init; } = "";
}
