using MQTTnet;

namespace FedEdge.Edge.Mqtt;

/// <summary>The broker answered a QoS 1 publish with a failure reason code (for example NotAuthorized).</summary>
public sealed class MqttPublishRejectedException(string topic, MqttClientPublishReasonCode reasonCode, string? reasonString)
    : Exception($"Broker rejected publish to '{topic}': {reasonCode}{(string.IsNullOrEmpty(reasonString) ? "" : $" ({reasonString})")}")
{
    public string Topic { get; } = topic;
    public MqttClientPublishReasonCode ReasonCode { get; } = reasonCode;

    /// <summary>Whether sending the same message again cannot succeed (as opposed to a busy or quota-limited broker).</summary>
    public bool IsPermanent => ReasonCode is MqttClientPublishReasonCode.NotAuthorized
        or MqttClientPublishReasonCode.TopicNameInvalid
        or MqttClientPublishReasonCode.PayloadFormatInvalid;
}
