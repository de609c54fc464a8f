using FedEdge.Cloud.Telemetry.Drift;

namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>
/// Hands each new drift event to the Event Hubs sink: JSON body, the device id as partition key (one device's events
/// stay in order), message id "drift-{federation}-{id}" for de-duplication downstream. Never waits on the hub: the event
/// goes to the sink's backlog on disk, and a full backlog refuses it (counted and logged by the sink).
/// </summary>
public sealed class EventHubsDriftForwarder(EventHubsSink sink) : IDriftEventObserver
{
    public const string EventType = "drift-event";

    public void OnRecorded(DriftEvent driftEvent) =>
        sink.TryEnqueue(new EventHubsEvent(driftEvent.DeviceId, DriftEventJson.Serialize(driftEvent), EventType, $"drift-{driftEvent.Federation}-{driftEvent.Id}"));
}
