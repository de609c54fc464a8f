using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// Where the embedded broker hands a device's update before acknowledging it (implemented by the ingestion bridge).
/// Returns <see cref="IngestOutcome.Taken"/> once the message is dealt with for good: the update accepted and durable,
/// refused for good (bad signature, replay, ...), or a chunk held that is not the last of its update. Returns a
/// retryable outcome, or throws, when it could not be taken now; the broker then refuses the publication with a
/// non-permanent reason code, and the device sends the update again.
/// </summary>
public interface IBrokerUpdateIngress
{
    Task<IngestOutcome> IngestAsync(MqttApplicationMessage message, CancellationToken cancellationToken);
}

/// <summary>What became of one message on an update topic.</summary>
/// <param name="IsTaken">Dealt with for good: the PUBACK may say success.</param>
/// <param name="Code">The PUBACK reason code for a message not taken: <see cref="MqttPubAckReasonCode.QuotaExceeded"/>
/// (reassembly share or budget spent), <see cref="MqttPubAckReasonCode.ImplementationSpecificError"/> (storage or an
/// incomplete chunked update); both are retryable for the device.</param>
/// <param name="Reason">Why it was not taken (the PUBACK's reason string).</param>
public readonly record struct IngestOutcome(bool IsTaken, MqttPubAckReasonCode Code, string? Reason)
{
    public static IngestOutcome Taken { get; } = new(true, MqttPubAckReasonCode.Success, null);

    public static IngestOutcome Retry(MqttPubAckReasonCode code, string reason) => new(false, code, reason);
}
