using System.Text.Json;
using System.Text.Json.Serialization;
using FedEdge.Protocol.Messages;

namespace FedEdge.Cloud.Telemetry.Drift;

/// <summary>
/// One drift a device detected and reported with a verified update (FedDAA, arXiv 2506.21054): which kind
/// (real = P(y|x), virtual = P(x), label = P(y)), when, against which model version, and the evidence numbers.
/// </summary>
public sealed record DriftEvent
{
    /// <summary>Store sequence number (increasing); 0 before the event is stored.</summary>
    public long Id { get; init; }

    public required string Federation { get; init; }

    public required string DeviceId { get; init; }

    /// <summary>When the device detected the drift (its clock), or when the cloud received it if the device gave no time.</summary>
    public required DateTimeOffset DetectedAt { get; init; }

    /// <summary>When the cloud stored the event.</summary>
    public DateTimeOffset RecordedAt { get; init; }

    public required DriftKind Kind { get; init; }

    /// <summary>Base model version of the update that carried the report.</summary>
    public long ModelVersion { get; init; }

    /// <summary>Hex id of the update that carried the report; one event per update (redeliveries are ignored).</summary>
    public string? UpdateId { get; init; }

    public long WindowIndex { get; init; }

    /// <summary>Nearest cluster centre of the previous window's prototype (-1 unknown).</summary>
    public int PreviousCentre { get; init; } = -1;

    /// <summary>Nearest cluster centre of the current window's prototype (-1 unknown); differs from the previous one for real drift.</summary>
    public int CurrentCentre { get; init; } = -1;

    /// <summary>Total-variation distance between the windows' label histograms (0..1).</summary>
    public double LabelShift { get; init; }

    /// <summary>Shift of the feature means in units of their standard deviation.</summary>
    public double FeatureShift { get; init; }

    public long SampleCount { get; init; }

    /// <summary>Whether the kind is an actual drift (real, virtual or label) rather than none/unspecified.</summary>
    public static bool IsDrift(DriftKind kind) => kind is DriftKind.Real or DriftKind.Virtual or DriftKind.Label;

    /// <summary>The event for a report carried by a verified update; null when the report says there was no drift.</summary>
    public static DriftEvent? FromReport(string federation, string deviceId, string? updateId, long modelVersion, DriftReport report, DateTimeOffset receivedAt)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (!IsDrift(report.Kind)) return null;
        return new DriftEvent
        {
            Federation = federation,
            DeviceId = deviceId,
            UpdateId = updateId,
            ModelVersion = modelVersion,
            DetectedAt = report.DetectedUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(report.DetectedUnixMs) : receivedAt,
            Kind = report.Kind,
            WindowIndex = report.WindowIndex,
            PreviousCentre = report.PreviousCentre,
            CurrentCentre = report.CurrentCentre,
            LabelShift = Finite(report.LabelShift, "label_shift", deviceId),
            FeatureShift = Finite(report.FeatureShift, "feature_shift", deviceId),
            SampleCount = report.SampleCount,
        };
    }

    private static double Finite(double value, string field, string deviceId) =>
        double.IsFinite(value) ? value : throw new ArgumentException($"Drift report of {deviceId}: {field} is {value}");
}

/// <summary>The JSON form of drift events (camelCase, kinds as "real"/"virtual"/"label"), shared by the HTTP API, MQTT and Event Hubs.</summary>
public static class DriftEventJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false) },
    };

    public static byte[] Serialize(DriftEvent driftEvent) => JsonSerializer.SerializeToUtf8Bytes(driftEvent, Options);

    public static DriftEvent Deserialize(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize<DriftEvent>(json, Options) ?? throw new JsonException("drift event JSON is null");
}
