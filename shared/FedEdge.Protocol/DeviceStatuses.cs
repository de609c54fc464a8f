using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol;

/// <summary>
/// Builders and a tolerant decoder for the retained <c>DeviceStatus</c> on
/// <see cref="MqttTopics.Status"/>. Status is not signed: the broker's ACL lets only the device
/// itself publish there, and the OFFLINE form is registered as the MQTT last will at connect time.
/// </summary>
public static class DeviceStatuses
{
    public const int MaxStatusBytes = 4096;

    public static DeviceStatus Create(string federation, string deviceId, DeviceState state, long modelVersion = 0, string? detail = null, TimeProvider? time = null) => new()
    {
        Federation = federation,
        DeviceId = deviceId,
        State = state,
        ModelVersion = modelVersion,
        UpdatedUnixMs = (time ?? TimeProvider.System).GetUtcNow().ToUnixTimeMilliseconds(),
        AgentVersion = typeof(DeviceStatuses).Assembly.GetName().Version?.ToString() ?? "",
        Platform = System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier,
        Detail = detail ?? "",
    };

    /// <summary>The payload to register as last will: OFFLINE, published by the broker when the device vanishes.</summary>
    public static byte[] LastWill(string federation, string deviceId) =>
        Create(federation, deviceId, DeviceState.Offline, detail: "connection lost").ToByteArray();

    /// <param name="transportDeviceId">The device id from the topic; the message must agree.</param>
    public static Decoded<DeviceStatus> Decode(ReadOnlySpan<byte> bytes, string federation, string transportDeviceId)
    {
        if (bytes.Length > MaxStatusBytes)
        {
            return Decoded<DeviceStatus>.Reject(RejectReason.Oversized, $"Status of {bytes.Length} bytes exceeds {MaxStatusBytes}.");
        }
        DeviceStatus status;
        try
        {
            status = DeviceStatus.Parser.ParseFrom(bytes);
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or ArgumentException or InvalidOperationException)
        {
            return Decoded<DeviceStatus>.Reject(RejectReason.Malformed, $"Not a DeviceStatus: {e.Message}");
        }
        if (status.Federation != federation)
        {
            return Decoded<DeviceStatus>.Reject(RejectReason.WrongFederation, $"Status for federation '{UpdateEnvelopeVerifier.Printable(status.Federation)}'.");
        }
        return status.DeviceId != transportDeviceId
            ? Decoded<DeviceStatus>.Reject(RejectReason.WrongDevice, $"Status claims device '{UpdateEnvelopeVerifier.Printable(status.DeviceId)}' on the topic of '{transportDeviceId}'.")
            : Decoded<DeviceStatus>.Accept(status);
    }
}
