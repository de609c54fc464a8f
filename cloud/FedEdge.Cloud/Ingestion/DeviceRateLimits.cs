using System.Collections.Concurrent;

namespace FedEdge.Cloud.Ingestion;

/// <summary>The rate of one kind of event per device: sustained rate and burst.</summary>
public sealed record RateLimit(double PerSecond, int Burst);

/// <summary>
/// Per-device token buckets on the cloud's clock for what a registered device makes the cloud do: update frames
/// processed, and update frames refused. A device whose refused-frame bucket is empty has its frames refused before any
/// processing (no verification, no grain call, no log line) until it refills, so junk costs the cloud a dictionary look-up.
/// Only registered devices get buckets (the registry check comes first), so the map is bounded by the registry.
/// </summary>
public sealed class DeviceRateLimits(TimeProvider time, RateLimit frames, RateLimit rejectedFrames)
{
    private readonly ConcurrentDictionary<string, (TokenBucket Frames, TokenBucket Rejected)> _devices = new(StringComparer.Ordinal);

    private (TokenBucket Frames, TokenBucket Rejected) Of(string deviceId) => _devices.GetOrAdd(deviceId, _ =>
        (new TokenBucket(time, frames.PerSecond, frames.Burst), new TokenBucket(time, rejectedFrames.PerSecond, rejectedFrames.Burst)));

    /// <summary>Whether a frame of the device may be processed now (takes a frame token); null if so, else why not.</summary>
    public string? RefuseFrame(string deviceId)
    {
        var buckets = Of(deviceId);
        if (!buckets.Rejected.HasToken)
            return $"more than {rejectedFrames.Burst} refused frames (refilled at {rejectedFrames.PerSecond}/s); frames refused unread for {buckets.Rejected.UntilNextToken.TotalSeconds:F0} s";
        return buckets.Frames.TryTake() ? null : $"more than {frames.Burst} frames at once (refilled at {frames.PerSecond}/s)";
    }

    /// <summary>Counts a refused frame of the device.</summary>
    public void Rejected(string deviceId) => Of(deviceId).Rejected.Take();
}
