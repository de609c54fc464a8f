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
    /// <summary>Ids of the most recently accepted updates, packed 16 bytes an id, oldest first (<see cref="UpdateIdWindow"/>).</summary>
    [Id(8)] public byte[] RecentUpdateIds { get; set; } = [];
}

/// <summary>
/// One device's run-time record: liveness, the de-duplication window of accepted update ids and its statistics.
/// <para>
/// The accepted-update write is lazy (coalesced, not awaited by the submission): the federation already made the
/// update and its key durable, so acceptance costs one storage commit, not two in sequence. If the process dies
/// before the device state caught up, a redelivered update is refused by the federation as a replay, and the device
/// then records it as accepted (it was) as well as the replay, so its statistics are repaired. Rejection counts are
/// kept in memory and written with the next write, so a flood of bad updates costs no disk writes.
/// </para>
/// </summary>
public sealed class DeviceGrain : Grain, IDeviceGrain
{
    private readonly IPersistentState<DeviceState> _state;
    private readonly ILogger<DeviceGrain> _logger;
    private readonly CoalescingWriter _writer;

    public DeviceGrain(
        [PersistentState("device", CloudHostExtensions.StorageName)] IPersistentState<DeviceState> state,
        ILogger<DeviceGrain> logger)
    {
        _state = state;
        _logger = logger;
        _writer = new CoalescingWriter(() =>
        {
            _state.State.RecentUpdateIds = Recent.ToBytes();
            return _state.WriteStateAsync();
        });
    }

    /// <summary>
    /// Accepted update ids remembered per device (written with every accepted update, so kept small). A sync
    /// federation refuses any update not based on the current version and an async one anything beyond its
    /// staleness cut-off, so only recent ids can still be replayed into a model.
    /// </summary>
    public const int DeduplicationWindow = 512;

    private UpdateIdWindow? _recent;

    private UpdateIdWindow Recent => _recent ??= UpdateIdWindow.FromBytes(DeduplicationWindow, _state.State.RecentUpdateIds);

    public async Task<SubmitResult> SubmitAsync(string federation, UpdateSubmission update)
    {
        var result = Recent.Contains(update.UpdateId)
            ? SubmitResult.Reject(RejectionReason.Replay, $"update {update.UpdateId} was already accepted")
            : await Model(federation, update.Cluster).SubmitAsync(update);
        if (result.Accepted)
        {
            RecordAccepted(update.UpdateId, update.Envelope.Length);
        }
        else
        {
            // A replay the federation knows but this window does not: accepted before a restart that lost the lazy write.
            if (result.Reason == RejectionReason.Replay && !Recent.Contains(update.UpdateId)) RecordAccepted(update.UpdateId, update.Envelope.Length);
            await RecordRejectedAsync(result.Reason ?? RejectionReason.NotAccepting, update.Envelope.Length);
        }
        return result;
    }

    /// <summary>The model grain a device submits to (almost always the same one), kept rather than resolved per update.</summary>
    private IFederationGrain Model(string federation, int cluster)
    {
        if (_model is not { } known || known.Federation != federation || known.Cluster != cluster)
            _model = known = (federation, cluster, GrainFactory.GetGrain<IFederationGrain>(ModelGrainKey.For(federation, cluster)));
        return known.Grain;
    }

    private (string Federation, int Cluster, IFederationGrain Grain)? _model;

    private void RecordAccepted(string updateId, long bytes)
    {
        if (!Recent.Add(updateId)) return;
        var s = _state.State;
        s.Accepted++;
        s.BytesAccepted += bytes;
        s.LastSeen = DateTimeOffset.UtcNow;
        _ = WriteInBackgroundAsync();
    }

    private async Task WriteInBackgroundAsync()
    {
        try
        {
            await _writer.WriteAsync();
        }
        catch (Exception e)
        {
            // Statistics only: the federation holds the update durably; the next write retries with the newer state.
            _logger.LogWarning(e, "Could not save statistics of device {Device}", this.GetPrimaryKeyString());
        }
    }

    public Task RecordRejectedAsync(RejectionReason reason, long bytes)
    {
        var s = _state.State;
        s.Rejected[reason] = s.Rejected.GetValueOrDefault(reason) + 1;
        s.BytesRejected += bytes;
        s.LastSeen = DateTimeOffset.UtcNow;
        return Task.CompletedTask;
    }

    public async Task SetOnlineAsync(string federation, bool online)
    {
        var s = _state.State;
        var changed = s.Online != online || s.Federation != federation;
        s.Federation = federation;
        s.Online = online;
        s.LastSeen = DateTimeOffset.UtcNow;
        // Written only on a change (LastSeen alone goes with the next write): a repeated status costs no write.
        if (changed)
        {
            await _writer.WriteAsync();
            _logger.LogInformation("Device {Device} is {State} in {Federation}", this.GetPrimaryKeyString(), online ? "online" : "offline", federation);
        }
        await GrainFactory.GetGrain<IFederationGrain>(federation).SetDeviceLiveAsync(this.GetPrimaryKeyString(), online);
    }

    public Task<DeviceStatistics> GetStatisticsAsync()
    {
        var s = _state.State;
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
            await _writer.WriteAsync().WaitAsync(cancellationToken);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Could not save statistics of device {Device} on deactivation", this.GetPrimaryKeyString());
        }
    }
}
