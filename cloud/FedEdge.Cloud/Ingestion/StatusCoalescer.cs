using System.Collections.Concurrent;

namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// Applies device status changes (online/offline) at a bounded rate per device: within the burst a change is applied at
/// once; beyond it only the latest state is kept and applied when the device's bucket refills (one timer per device on
/// the cloud's clock). A device toggling its status 2,000 times costs a handful of state writes, and the last state
/// it published is the one that holds. Thread-safe.
/// </summary>
public sealed class StatusCoalescer(TimeProvider time, RateLimit rate, Func<string, string, bool, Task> apply)
{
    private readonly ConcurrentDictionary<string, Entry> _devices = new(StringComparer.Ordinal);

    /// <summary>Changes held back (replaced by a later one, or still waiting), for tests and the status API.</summary>
    public long Coalesced => Interlocked.Read(ref _coalesced);
    private long _coalesced;

    /// <summary>Status changes offered since start.</summary>
    public long Offered => Interlocked.Read(ref _offered);
    private long _offered;

    /// <summary>Offers the device's latest state; completes once it is applied, or once it is held for later.</summary>
    public Task OfferAsync(string federation, string deviceId, bool online)
    {
        Interlocked.Increment(ref _offered);
        var entry = _devices.GetOrAdd(deviceId, _ => new Entry(new TokenBucket(time, rate.PerSecond, rate.Burst)));
        lock (entry)
        {
            if (entry.Held is null && entry.Bucket.TryTake()) return apply(federation, deviceId, online);
            if (entry.Held is not null) Interlocked.Increment(ref _coalesced);
            entry.Held = (federation, online);
            entry.Timer ??= time.CreateTimer(_ => _ = ApplyHeldAsync(deviceId, entry), null, entry.Bucket.UntilNextToken, Timeout.InfiniteTimeSpan);
            return Task.CompletedTask;
        }
    }

    private async Task ApplyHeldAsync(string deviceId, Entry entry)
    {
        (string Federation, bool Online) held;
        lock (entry)
        {
            entry.Timer?.Dispose();
            entry.Timer = null;
            if (entry.Held is not { } h) return;
            if (!entry.Bucket.TryTake())
            {
                entry.Timer = time.CreateTimer(_ => _ = ApplyHeldAsync(deviceId, entry), null, entry.Bucket.UntilNextToken, Timeout.InfiniteTimeSpan);
                return;
            }
            held = h;
            entry.Held = null;
        }
        try
        {
            await apply(held.Federation, deviceId, held.Online);
        }
        catch
        {
            // A failed apply (the silo stopping) is not retried: the device's next status brings the state again.
        }
    }

    private sealed class Entry(TokenBucket bucket)
    {
        public TokenBucket Bucket { get; } = bucket;
        public (string Federation, bool Online)? Held { get; set; }
        public ITimer? Timer { get; set; }
    }
}
