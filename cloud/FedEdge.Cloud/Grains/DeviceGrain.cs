using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Hosting;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Grains;

[GenerateSerializer]
public sealed class DeviceState
{
    [Id(0)] public string? Federation { get; set; }
    [Id(1)] public bool Online { get; set; }
    [Id(2)] public DateTimeOffset? LastSeen { get; set; }
    [Id(3)] public long Accepted { get; set; }
    [Id(4)] public long BytesAccepted { get; set; }
    [Id(5)] public Dictionary<RejectionReason, long> Rejected { get; set; } = [];
    [Id(6)] public long BytesRejected { get; set; }
    /// <summary>Ids of the most recently accepted updates, oldest first (the de-duplication window).</summary>
    [Id(7)] public List<string> RecentUpdateIds { get; set; } = [];
}

/// <summary>
/// One device's run-time record: liveness, the de-duplication window of accepted update ids (persisted before
/// <see cref="RecordAcceptedAsync"/> returns) and its statistics. Rejection counts are kept in memory and
/// written with the next accepted update or liveness change, so a flood of bad updates costs no disk writes.
/// </summary>
public sealed class DeviceGrain(
    [PersistentState("device", CloudHostExtensions.StorageName)] IPersistentState<DeviceState> state,
    ILogger<DeviceGrain> logger) : Grain, IDeviceGrain
{
    /// <summary>
    /// Accepted update ids remembered per device (written with every accepted update, so kept small). A sync
    /// federation refuses any update not based on the current version and an async one anything beyond its
    /// staleness cut-off, so only recent ids can still be replayed into a model.
    /// </summary>
    public const int DeduplicationWindow = 512;

    private HashSet<string>? _recent;

    private HashSet<string> Recent => _recent ??= new HashSet<string>(state.State.RecentUpdateIds, StringComparer.Ordinal);

    public async Task<SubmitResult> SubmitAsync(string federation, UpdateSubmission update)
    {
        var result = Recent.Contains(update.UpdateId)
            ? SubmitResult.Reject(RejectionReason.Replay, $"update {update.UpdateId} was already accepted")
            : await GrainFactory.GetGrain<IFederationGrain>(federation).SubmitAsync(update);
        if (result.Accepted) await RecordAcceptedAsync(update.UpdateId, update.Envelope.Length);
        else await RecordRejectedAsync(result.Reason ?? RejectionReason.NotAccepting, update.Envelope.Length);
        return result;
    }

    private async Task RecordAcceptedAsync(string updateId, long bytes)
    {
        if (!Recent.Add(updateId)) return;
        var s = state.State;
        s.RecentUpdateIds.Add(updateId);
        if (s.RecentUpdateIds.Count > DeduplicationWindow)
        {
            Recent.Remove(s.RecentUpdateIds[0]);
            s.RecentUpdateIds.RemoveAt(0);
        }
        s.Accepted++;
        s.BytesAccepted += bytes;
        s.LastSeen = DateTimeOffset.UtcNow;
        await state.WriteStateAsync();
    }

    public Task RecordRejectedAsync(RejectionReason reason, long bytes)
    {
        var s = state.State;
        s.Rejected[reason] = s.Rejected.GetValueOrDefault(reason) + 1;
        s.BytesRejected += bytes;
        s.LastSeen = DateTimeOffset.UtcNow;
        return Task.CompletedTask;
    }

    public async Task SetOnlineAsync(string federation, bool online)
    {
        var s = state.State;
        var changed = s.Online != online || s.Federation != federation;
        s.Federation = federation;
        s.Online = online;
        s.LastSeen = DateTimeOffset.UtcNow;
        await state.WriteStateAsync();
        if (changed) logger.LogInformation("Device {Device} is {State} in {Federation}", this.GetPrimaryKeyString(), online ? "online" : "offline", federation);
        await GrainFactory.GetGrain<IFederationGrain>(federation).SetDeviceLiveAsync(this.GetPrimaryKeyString(), online);
    }

    public Task<DeviceStatistics> GetStatisticsAsync()
    {
        var s = state.State;
        return Task.FromResult(new DeviceStatistics
        {
            DeviceId = this.GetPrimaryKeyString(),
            Federation = s.Federation,
            Online = s.Online,
            LastSeen = s.LastSeen,
            Accepted = s.Accepted,
            BytesAccepted = s.BytesAccepted,
            Rejected = new Dictionary<RejectionReason, long>(s.Rejected),
            BytesRejected = s.BytesRejected,
        });
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // Keep rejection counts gathered since the last write.
        try
        {
            await state.WriteStateAsync(cancellationToken);
        }
        catch (Exception e)
        {
            logger.LogWarning(e, "Could not save statistics of device {Device} on deactivation", this.GetPrimaryKeyString());
        }
    }
}
