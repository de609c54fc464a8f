using FedEdge.Protocol;

namespace FedEdge.Cloud.Security;

/// <summary>
/// What a device may do on the broker, in one place for the embedded broker's interceptors and the
/// Mosquitto ACL export: publish only to its own update, status and telemetry topics; subscribe only
/// to its own federation's model topics. The cloud's service identity is not subject to it.
/// </summary>
public static class TopicAccessPolicy
{
    /// <summary>The exact topics the device may publish to.</summary>
    public static IReadOnlyList<string> PublishTopics(string federation, string deviceId) =>
    [
        MqttTopics.Update(federation, deviceId),
        MqttTopics.Status(federation, deviceId),
        MqttTopics.Telemetry(federation, deviceId),
    ];

    /// <summary>The topic filter covering everything the device may read.</summary>
    public static string SubscribeFilter(string federation) => MqttTopics.ModelFilter(federation);

    public static bool MayPublish(DeviceRecord device, string topic)
    {
        foreach (var allowed in PublishTopics(device.Federation, device.DeviceId))
            if (string.Equals(topic, allowed, StringComparison.Ordinal)) return true;
        return false;
    }

    /// <summary>
    /// A filter is allowed when it stays inside the federation's model subtree: the model topic itself or a
    /// filter under it. Wildcards are only possible after that literal prefix, so they cannot escape it.
    /// </summary>
    public static bool MaySubscribe(DeviceRecord device, string topicFilter)
    {
        var model = MqttTopics.Model(device.Federation);
        return string.Equals(topicFilter, model, StringComparison.Ordinal)
            || topicFilter.StartsWith(model + "/", StringComparison.Ordinal);
    }
}
