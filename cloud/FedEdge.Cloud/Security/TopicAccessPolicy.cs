using FedEdge.Protocol;

namespace FedEdge.Cloud.Security;

/// <summary>
/// What a device may do on the broker, in one place for the embedded broker's interceptors and the
/// Mosquitto ACL export: publish only to its own update, status and telemetry topics; read only its own federation's
/// model topics, its federation's cluster model topics (FedDAA) and its own cluster assignment — never another
/// device's. Model and assignment topics are written by the cloud only. The cloud's service identity is not subject to it.
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

    /// <summary>The topic filters covering everything the device may read (one ACL line each).</summary>
    public static IReadOnlyList<string> ReadFilters(string federation, string deviceId) =>
    [
        MqttTopics.ModelFilter(federation),
        MqttTopics.AllClusterModelsFilter(federation),
        MqttTopics.ClusterAssignment(federation, deviceId),
    ];

    public static bool MayPublish(DeviceRecord device, string topic)
    {
        foreach (var allowed in PublishTopics(device.Federation, device.DeviceId))
            if (string.Equals(topic, allowed, StringComparison.Ordinal)) return true;
        return false;
    }

    /// <summary>
    /// A filter is allowed when it stays inside one of the device's readable subtrees: the federation's model topic or
    /// a filter under it; a cluster model topic (cluster level a number or '+') or a filter under it; or exactly the
    /// device's own assignment topic. Wildcards are only possible after a literal prefix (or as the whole cluster
    /// level), so they cannot escape it: "fededge/f/cluster/#" or "fededge/f/assignment/+" are refused.
    /// </summary>
    public static bool MaySubscribe(DeviceRecord device, string topicFilter)
    {
        var model = MqttTopics.Model(device.Federation);
        if (string.Equals(topicFilter, model, StringComparison.Ordinal) || topicFilter.StartsWith(model + "/", StringComparison.Ordinal))
            return true;
        if (string.Equals(topicFilter, MqttTopics.ClusterAssignment(device.Federation, device.DeviceId), StringComparison.Ordinal))
            return true;
        return IsClusterModelFilter(device.Federation, topicFilter);
    }

    /// <summary>fededge/{federation}/cluster/{c or +}/model, optionally followed by "/" and more levels.</summary>
    private static bool IsClusterModelFilter(string federation, string topicFilter)
    {
        var prefix = $"{MqttTopics.Root}/{federation}/cluster/";
        if (!topicFilter.StartsWith(prefix, StringComparison.Ordinal)) return false;
        var rest = topicFilter.AsSpan(prefix.Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0) return false;
        var cluster = rest[..slash];
        if (!(cluster is "+" || (cluster.Length <= 9 && !cluster.ContainsAnyExceptInRange('0', '9')))) return false;
        var after = rest[(slash + 1)..];
        return after is "model" || after.StartsWith("model/", StringComparison.Ordinal);
    }
}
