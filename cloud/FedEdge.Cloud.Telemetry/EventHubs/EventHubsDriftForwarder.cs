using FedEdge.Cloud.Telemetry.Drift;

namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>
/// Hands each new drift event to the Event Hubs sink: JSON body, the device id as partition key (one device's events
/// stay in order), message id "drift-{federation}-{id}" for de-duplication downstream. Never waits: a full queue drops.
/// </summary>
public sealed class EventHubsDriftForwarder(EventHubsSink sink) : IDriftEventObserver
{
    public const string EventType = "drift-event";

    public void OnRecorded(DriftEvent driftEvent) =>
        sink.TryEnqueue(new EventHubsEvent(driftEvent.DeviceId, DriftEventJson.Serialize(driftEvent), EventType, $"drift-{driftEvent.Federation}-{driftEvent.Id}"));
}
