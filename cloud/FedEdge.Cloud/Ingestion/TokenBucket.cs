namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// A token bucket on an injected clock: holds up to <c>burst</c> tokens, refilled at <c>perSecond</c>; each event takes
/// one. Thread-safe.
/// </summary>
public sealed class TokenBucket
{
    private readonly TimeProvider _time;
    private readonly double _perSecond;
    private readonly double _burst;
    private readonly Lock _lock = new();
    private double _tokens;
    private long _stamp;

    public TokenBucket(TimeProvider time, double perSecond, int burst)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(perSecond);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        (_time, _perSecond, _burst, _tokens, _stamp) = (time, perSecond, burst, burst, time.GetTimestamp());
    }

    /// <summary>Takes a token if one is there.</summary>
    public bool TryTake()
    {
        lock (_lock)
        {
            Refill();
            if (_tokens < 1) return false;
            _tokens--;
            return true;
        }
    }

    /// <summary>Takes a token if one is there; never below zero (an event that happened anyway, counted).</summary>
    public void Take() => TryTake();

    /// <summary>Whether a token is there, without taking it.</summary>
    public bool HasToken
    {
        get
        {
            lock (_lock)
            {
                Refill();
                return _tokens >= 1;
            }
        }
    }

    /// <summary>Whether the bucket is full (nothing taken that has not refilled): its state can be forgotten.</summary>
    public bool IsFull
    {
        get
        {
            lock (_lock)
            {
                Refill();
                return _tokens >= _burst;
            }
        }
    }

    /// <summary>How long until a token is there (zero if one is).</summary>
    public TimeSpan UntilNextToken
    {
        get
        {
            lock (_lock)
            {
                Refill();
                return _tokens >= 1 ? TimeSpan.Zero : TimeSpan.FromSeconds((1 - _tokens) / _perSecond);
            }
        }
    }

    private void Refill()
    {
        var now = _time.GetTimestamp();
        _tokens = Math.Min(_burst, _tokens + (_time.GetElapsedTime(_stamp, now).TotalSeconds * _perSecond));
        _stamp = now;
    }
}
