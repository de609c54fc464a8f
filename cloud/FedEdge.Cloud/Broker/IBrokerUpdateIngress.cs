using MQTTnet;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// Where the embedded broker hands a device's update before acknowledging it (implemented by the ingestion bridge).
/// Returns once the update is accepted and durable, or refused for good (bad signature, replay, ...); throws when it
/// could not be processed now, and the broker then refuses the publication so that the device sends it again.
/// </summary>
public interface IBrokerUpdateIngress
{
    Task IngestAsync(MqttApplicationMessage message, CancellationToken cancellationToken);
}
