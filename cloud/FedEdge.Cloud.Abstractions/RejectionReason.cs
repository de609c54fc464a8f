namespace FedEdge.Cloud.Abstractions;

/// <summary>
/// Why the cloud refused an update. Every rejection is counted per reason (metrics, status API,
/// per-device statistics) and logged; a rejected update never reaches the aggregator.
/// </summary>
public enum RejectionReason
{
    /// <summary>The payload could not be decoded (truncated, bad protobuf, wrong codec parameters).</summary>
    Malformed,

    /// <summary>The device id is not in the registry.</summary>
    UnknownDevice,

    /// <summary>The device was revoked by an operator.</summary>
    RevokedDevice,

    /// <summary>The Ed25519 signature does not verify against the device's registered public key.</summary>
    BadSignature,

    /// <summary>The envelope names another device or federation than the topic it arrived on.</summary>
    WrongDevice,

    /// <summary>The federation named by the update is not configured on this cloud.</summary>
    UnknownFederation,

    /// <summary>The base model version was never published by this federation (ahead of the current one).</summary>
    UnknownBaseVersion,

    /// <summary>The base model version is older than the staleness cut-off (or, in sync mode, not the current round's).</summary>
    TooStale,

    /// <summary>The decoded update holds NaN or infinity.</summary>
    NonFinite,

    /// <summary>The payload exceeds the configured maximum size, or its dimension is not the model's.</summary>
    Oversized,

    /// <summary>The update id was already accepted from this device.</summary>
    Replay,

    /// <summary>The federation is not accepting updates (finished, or the device was not sampled this round).</summary>
    NotAccepting,

    /// <summary>
    /// The claimed sample count (the FedAvg weight) is above the federation's <c>MaxSampleCount</c>: unbounded, one
    /// device could claim 10⁹ samples and dominate a weighted mean.
    /// </summary>
    SampleCountOutOfRange,

    /// <summary>
    /// The update names a cluster model (<c>UpdateEnvelope.cluster</c>) that this federation does not have: never
    /// created, retired after losing its devices, or the federation is not clustered.
    /// </summary>
    UnknownCluster,

    /// <summary>
    /// The FedDAA drift statistics carried by the update (<c>UpdateEnvelope.drift</c>) have inconsistent shapes,
    /// non-finite or negative values, or another prototype shape than the federation's devices use.
    /// </summary>
    BadDriftStatistics,

    /// <summary>
    /// Not refused for good: a chunk did not fit the device's share of the reassembly memory (or the budget). The device
    /// gets a retryable PUBACK (QuotaExceeded) and sends the update again later; not counted in its statistics.
    /// </summary>
    Busy,

    /// <summary>
    /// The decoded update's L2 norm is above the federation's bound: <c>MaxUpdateNorm</c>, or <c>MaxNormToMedian</c> times
    /// the median norm of its recently accepted updates (a scaled or 1e30 update, found when it is verified).
    /// </summary>
    NormOutOfRange,
}
