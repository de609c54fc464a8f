using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// Refusals (of connections, logins, publications, update frames) counted per subject (a device id, a user name or a
/// source address) and reason, and written as one warning line per interval (<see cref="CloudOptions.RejectionLogInterval"/>)
/// instead of a line per refusal: a device sending junk as fast as it can costs the log one line a minute, not one per frame.
/// Each (subject, reason) keeps the detail of its first refusal in the interval. At most <see cref="MaxKeys"/> pairs are
/// kept per interval; the rest are counted together.
/// </summary>
public sealed class RejectionLog : IDisposable
{
    public const int MaxKeys = 1000;
    private const int MaxDetailLength = 200;

    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly ITimer _timer;
    private Dictionary<(string Subject, string Reason), (long Count, string Detail)> _counts = [];
    private long _overflow;

    public RejectionLog(ILogger logger, TimeProvider time, TimeSpan interval)
    {
        _logger = logger;
        Interval = interval;
        _timer = time.CreateTimer(_ => Flush(), null, interval, interval);
    }

    public TimeSpan Interval { get; }

    /// <summary>Refusals recorded since the start, over every subject and reason.</summary>
    public long Total => Interlocked.Read(ref _total);
    private long _total;

    public void Record(string subject, string reason, string detail)
    {
        Interlocked.Increment(ref _total);
        lock (_lock)
        {
            var key = (subject, reason);
            if (_counts.TryGetValue(key, out var entry)) _counts[key] = (entry.Count + 1, entry.Detail);
            else if (_counts.Count < MaxKeys) _counts[key] = (1, detail.Length > MaxDetailLength ? detail[..MaxDetailLength] + "…" : detail);
            else _overflow++;
        }
    }

    /// <summary>Writes the line for the refusals counted since the last one (nothing if none).</summary>
    public void Flush()
    {
        Dictionary<(string Subject, string Reason), (long Count, string Detail)> counts;
        long overflow;
        lock (_lock)
        {
            if (_counts.Count == 0 && _overflow == 0) return;
            (counts, _counts, overflow, _overflow) = (_counts, [], _overflow, 0);
        }
        var summary = string.Join("; ", counts.OrderByDescending(c => c.Value.Count)
            .Select(c => $"{c.Key.Subject} {c.Key.Reason} ×{c.Value.Count} (first: {c.Value.Detail})"));
        if (overflow > 0) summary += $"; {overflow} more from other subjects";
        _logger.LogWarning("Refused in the last {Interval}: {Summary}", Interval, summary);
    }

    /// <summary>A hostile string (a user name, a topic) fit for a log line: length capped, control characters replaced.</summary>
    public static string Printable(string? value)
    {
        if (value is null) return "(none)";
        var trimmed = value.Length > 64 ? value[..64] + "…" : value;
        return string.Concat(trimmed.Select(c => char.IsControl(c) ? '?' : c));
    }

    public void Dispose()
    {
        _timer.Dispose();
        Flush();
    }
}
