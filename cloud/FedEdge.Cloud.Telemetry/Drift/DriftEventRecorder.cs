using FedEdge.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Telemetry.Drift;

/// <summary>Where the cloud's ingestion hands the drift reports of verified updates.</summary>
public interface IDriftEventSink
{
    /// <summary>
    /// Records a drift event; completes once it is durable. Returns the stored event, or null when the event of
    /// that device's update was already recorded (a redelivery), so calling it again for the same update is safe.
    /// </summary>
    Task<DriftEvent?> RecordAsync(DriftEvent driftEvent, CancellationToken cancellationToken);

    /// <summary>
    /// Records the drift report a verified update carried (the one call the ingestion path makes). A missing report or
    /// a report of no drift records nothing; a report with bad evidence (NaN, ∞) is logged and ignored, never thrown,
    /// so it cannot make the update undeliverable.
    /// </summary>
    Task<DriftEvent?> RecordReportAsync(string federation, string deviceId, string updateId, long modelVersion, DriftReport? report,
        CancellationToken cancellationToken = default);
}

/// <summary>Told about every newly stored drift event; must return at once (queue the work, never wait on a network).</summary>
public interface IDriftEventObserver
{
    void OnRecorded(DriftEvent driftEvent);
}

/// <summary>
/// Stores drift events durably, then tells the observers (MQTT telemetry, Event Hubs), which queue them without
/// blocking: the store is the record, the observers are best-effort live feeds.
/// </summary>
public sealed class DriftEventRecorder(SqliteDriftEventStore store, IEnumerable<IDriftEventObserver> observers, ILogger<DriftEventRecorder> logger)
    : IDriftEventSink
{
    private readonly IDriftEventObserver[] _observers = [.. observers];

    public async Task<DriftEvent?> RecordAsync(DriftEvent driftEvent, CancellationToken cancellationToken)
    {
        var stored = await store.AppendAsync(driftEvent, cancellationToken);
        if (stored is null)
        {
            logger.LogDebug("Drift event of update {Update} from {Device} already recorded", driftEvent.UpdateId, driftEvent.DeviceId);
            return null;
        }
        logger.LogInformation("Drift event {Id}: {Kind} drift on {Device} in {Federation} (window {Window}, centres {Previous}→{Current}, label shift {LabelShift:F3}, feature shift {FeatureShift:F3})",
            stored.Id, stored.Kind, stored.DeviceId, stored.Federation, stored.WindowIndex, stored.PreviousCentre, stored.CurrentCentre, stored.LabelShift, stored.FeatureShift);
        foreach (var observer in _observers)
        {
            try
            {
                observer.OnRecorded(stored);
            }
            catch (Exception e)
            {
                logger.LogError(e, "Drift event observer {Observer} failed on event {Id}", observer.GetType().Name, stored.Id);
            }
        }
        return stored;
    }

    public Task<DriftEvent?> RecordReportAsync(string federation, string deviceId, string updateId, long modelVersion, DriftReport? report,
        CancellationToken cancellationToken = default)
    {
        if (report is null) return Task.FromResult<DriftEvent?>(null);
        DriftEvent? driftEvent;
        try
        {
            driftEvent = DriftEvent.FromReport(federation, deviceId, updateId, modelVersion, report, DateTimeOffset.UtcNow);
        }
        catch (ArgumentException e)
        {
            logger.LogWarning("Ignored the drift report of update {Update} from {Device} in {Federation}: {Problem}", updateId, deviceId, federation, e.Message);
            return Task.FromResult<DriftEvent?>(null);
        }
        return driftEvent is null ? Task.FromResult<DriftEvent?>(null) : RecordAsync(driftEvent, cancellationToken);
    }
}
