using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Publishing;

/// <summary>
/// Publishes a device's FedDAA cluster assignment, signed with the cloud key (<see cref="ClusterAssignmentSigner"/>),
/// retained at QoS 1 on <see cref="MqttTopics.ClusterAssignment"/>: a device that connects later still finds it, and
/// the broker lets only that device read it (<see cref="TopicAccessPolicy"/>).
/// </summary>
public sealed class ClusterAssignmentPublication : IDisposable
{
    private readonly MqttServiceConnection _mqtt;
    private readonly SigningKeyPair _key;
    private readonly ClusterAssignmentSigner _signer;

    public ClusterAssignmentPublication(MqttServiceConnection mqtt, CloudSigningKey key)
    {
        _mqtt = mqtt;
        _key = key.ToSigningKeyPair();
        _signer = new ClusterAssignmentSigner(_key);
    }

    public async Task PublishAsync(ClusterAssignment assignment, CancellationToken cancellationToken)
    {
        var signed = _signer.Sign(assignment);
        await _mqtt.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic(MqttTopics.ClusterAssignment(assignment.Federation, assignment.DeviceId))
            .WithPayload(signed)
            .WithRetainFlag()
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build(), cancellationToken);
    }

    /// <summary>Deletes a device's retained assignment (the device left the clustering, e.g. was revoked).</summary>
    public Task WithdrawAsync(string federation, string deviceId, CancellationToken cancellationToken) =>
        _mqtt.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic(MqttTopics.ClusterAssignment(federation, deviceId))
            .WithPayload(Array.Empty<byte>())
            .WithRetainFlag()
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build(), cancellationToken);

    public void Dispose() => _key.Dispose();
}
