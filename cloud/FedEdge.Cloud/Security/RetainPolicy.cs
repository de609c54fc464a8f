using FedEdge.Protocol;

namespace FedEdge.Cloud.Security;

/// <summary>
/// What a device may leave retained on the broker: only its status (online/offline, also its last will), and no larger
/// than a status can be (<see cref="DeviceStatuses.MaxStatusBytes"/>). A retained message lives in the broker's memory
/// until replaced, so without this a device could park a large message on each of its topics.
/// </summary>
public static class RetainPolicy
{
    /// <summary>Why the publication may not be kept retained; null when it may.</summary>
    public static string? Refusal(DeviceRecord device, string topic, bool retain, long payloadBytes)
    {
        if (!retain) return null;
        if (!string.Equals(topic, MqttTopics.Status(device.Federation, device.DeviceId), StringComparison.Ordinal))
            return "retain is allowed only on the device's status topic";
        return payloadBytes > DeviceStatuses.MaxStatusBytes
            ? $"a retained status of {payloadBytes} bytes exceeds {DeviceStatuses.MaxStatusBytes}"
            : null;
    }
}
