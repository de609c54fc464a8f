namespace FedEdge.Cloud.Abstractions;

/// <summary>
/// One device (key: device id). Holds what the cloud learns about the device at run time: liveness,
/// the ids of updates already accepted (for de-duplication, persisted) and per-device statistics.
/// Credentials and public keys live in the device registry, which the broker also reads.
/// </summary>
public interface IDeviceGrain : IGrainWithStringKey
{
    /// <summary>
    /// Offers a verified update of this device to its federation's model named by <see cref="UpdateSubmission.Cluster"/>
    /// (the federation's own model, or a FedDAA cluster model): refused as <see cref="RejectionReason.Replay"/>
    /// when its id is in the de-duplication window, else submitted, and when accepted its id is recorded
    /// (persisted). Running through the device grain serializes one device's updates, so two deliveries of the
    /// same update can never both be counted; the federation's pending list covers a crash between the
    /// federation's write and this grain's.
    /// </summary>
    Task<SubmitResult> SubmitAsync(string federation, UpdateSubmission update);

    /// <summary>Counts a rejected update under <paramref name="reason"/>.</summary>
    Task RecordRejectedAsync(RejectionReason reason, long bytes);

    /// <summary>Liveness from the device's status topic ("online", or the "offline" last will).</summary>
    Task SetOnlineAsync(string federation, bool online);

    Task<DeviceStatistics> GetStatisticsAsync();
}

[GenerateSerializer, Immutable]
public sealed record DeviceStatistics
{
    [Id(0)] public string DeviceId { get; init; } = "";
    [Id(1)] public string? Federation { get; init; }
    [Id(2)] public bool Online { get; init; }
    [Id(3)] public DateTimeOffset? LastSeen { get; init; }
    [Id(4)] public long Accepted { get; init; }
    [Id(5)] public long BytesAccepted { get; init; }
    [Id(6)] public IReadOnlyDictionary<RejectionReason, long> Rejected { get; init; } = new Dictionary<RejectionReason, long>();
    [Id(7)] public long BytesRejected { get; init; }
}
