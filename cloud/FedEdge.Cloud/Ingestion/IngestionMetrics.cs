using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using FedEdge.Cloud.Abstractions;

namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// Counters of the ingestion bridge, as System.Diagnostics.Metrics instruments (meter "FedEdge.Cloud", for
/// dotnet-counters / OpenTelemetry) and as an in-process snapshot for the status API and tests.
/// </summary>
public sealed class IngestionMetrics : IDisposable
{
    public const string MeterName = "FedEdge.Cloud";

    private readonly Meter _meter;
    private readonly Counter<long> _accepted;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _bytes;
    private readonly ConcurrentDictionary<RejectionReason, long> _rejectedByReason = new();
    private long _acceptedCount;
    private long _acceptedBytes;
    private long _framesReceived;

    public IngestionMetrics(IMeterFactory? meterFactory = null)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _accepted = _meter.CreateCounter<long>("fededge.updates.accepted", description: "Updates accepted into a round or buffer");
        _rejected = _meter.CreateCounter<long>("fededge.updates.rejected", description: "Updates rejected, by reason");
        _bytes = _meter.CreateCounter<long>("fededge.updates.bytes", unit: "By", description: "Bytes of accepted update envelopes");
    }

    public long Accepted => Interlocked.Read(ref _acceptedCount);

    public long AcceptedBytes => Interlocked.Read(ref _acceptedBytes);

    /// <summary>MQTT messages taken from update topics (whole envelopes and chunks).</summary>
    public long FramesReceived => Interlocked.Read(ref _framesReceived);

    public long Rejected(RejectionReason reason) => _rejectedByReason.GetValueOrDefault(reason);

    public IReadOnlyDictionary<RejectionReason, long> RejectedByReason => new Dictionary<RejectionReason, long>(_rejectedByReason);

    internal void Frame() => Interlocked.Increment(ref _framesReceived);

    internal void RecordAccepted(string federation, long bytes)
    {
        Interlocked.Increment(ref _acceptedCount);
        Interlocked.Add(ref _acceptedBytes, bytes);
        var tag = new KeyValuePair<string, object?>("federation", federation);
        _accepted.Add(1, tag);
        _bytes.Add(bytes, tag);
    }

    internal void RecordRejected(string federation, RejectionReason reason)
    {
        _rejectedByReason.AddOrUpdate(reason, 1, (_, n) => n + 1);
        _rejected.Add(1, new KeyValuePair<string, object?>("federation", federation), new KeyValuePair<string, object?>("reason", reason.ToString()));
    }

    public void Dispose() => _meter.Dispose();
}
