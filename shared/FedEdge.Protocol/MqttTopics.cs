namespace FedEdge.Protocol;

/// <summary>
/// The MQTT topic scheme, in one place so that the broker's access control, the cloud's
/// ingestion bridge and the edge agent cannot disagree. See docs/protocol.md.
/// </summary>
public static class MqttTopics
{
    public const string Root = "fededge";

    /// <summary>Retained <c>ModelAnnouncement</c> of a federation's current global model.</summary>
    public static string Model(string federation) => $"{Root}/{federation}/model";

    /// <summary>Retained chunks of model version <paramref name="version"/>.</summary>
    public static string ModelChunk(string federation, long version, int index) => $"{Root}/{federation}/model/{version}/{index}";

    /// <summary>Filter matching the announcement and every chunk of a federation's models.</summary>
    public static string ModelFilter(string federation) => $"{Root}/{federation}/model/#";

    /// <summary>Where one device publishes its update envelopes (and their chunks).</summary>
    public static string Update(string federation, string deviceId) => $"{Root}/{federation}/update/{deviceId}";

    /// <summary>Filter matching every device's updates in a federation.</summary>
    public static string UpdateFilter(string federation) => $"{Root}/{federation}/update/+";

    /// <summary>Device liveness: "online" retained on connect, "offline" as the last will.</summary>
    public static string Status(string federation, string deviceId) => $"{Root}/{federation}/status/{deviceId}";

    /// <summary>Device telemetry (training metrics, drift statistics).</summary>
    public static string Telemetry(string federation, string deviceId) => $"{Root}/{federation}/telemetry/{deviceId}";

    /// <summary>
    /// The cloud's drift events about a device (JSON, published by the cloud only; devices cannot publish here).
    /// Kept apart from the devices' protobuf telemetry so one subscription never mixes the two formats.
    /// </summary>
    public static string DriftEvent(string federation, string deviceId) => $"{Root}/{federation}/drift/{deviceId}";

    /// <summary>Filter matching every drift event of a federation.</summary>
    public static string DriftEventFilter(string federation) => $"{Root}/{federation}/drift/+";

    /// <summary>Retained <c>ModelAnnouncement</c> of cluster model <paramref name="cluster"/> (&gt; 0) of a clustered federation.</summary>
    public static string ClusterModel(string federation, int cluster) => $"{Root}/{federation}/cluster/{cluster}/model";

    /// <summary>Retained chunks of version <paramref name="version"/> of a cluster model.</summary>
    public static string ClusterModelChunk(string federation, int cluster, long version, int index) => $"{Root}/{federation}/cluster/{cluster}/model/{version}/{index}";

    /// <summary>Filter matching the announcement and every chunk of one cluster model.</summary>
    public static string ClusterModelFilter(string federation, int cluster) => $"{Root}/{federation}/cluster/{cluster}/model/#";

    /// <summary>Filter matching every cluster model of a federation (what a device of the federation may read).</summary>
    public static string AllClusterModelsFilter(string federation) => $"{Root}/{federation}/cluster/+/model/#";

    /// <summary>Retained, cloud-signed <c>ClusterAssignment</c> telling one device its cluster(s).</summary>
    public static string ClusterAssignment(string federation, string deviceId) => $"{Root}/{federation}/assignment/{deviceId}";
}
