namespace FedEdge.Edge.Mqtt;

/// <summary>
/// Reconnect delays: the ceiling doubles per failed attempt from <c>min</c> up to <c>max</c>, and each delay is
/// drawn uniformly from [ceiling/2, ceiling] ("equal jitter", AWS Architecture Blog, Exponential Backoff and
/// Jitter, 2015) so that a fleet that lost the broker together does not reconnect in lock-step.
/// </summary>
public sealed class ExponentialBackoff
{
    private readonly TimeSpan _min;
    private readonly TimeSpan _max;
    private readonly Random _random;
    private int _attempt;

    public ExponentialBackoff(TimeSpan min, TimeSpan max, Random? random = null)
    {
        if (min <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(min), min, "Backoff minimum must be positive.");
        if (max < min)
            throw new ArgumentOutOfRangeException(nameof(max), max, $"Backoff maximum must be at least the minimum {min}.");
        _min = min;
        _max = max;
        _random = random ?? Random.Shared;
    }

    /// <summary>Failed attempts since the last <see cref="Reset"/>.</summary>
    public int Attempt => _attempt;

    /// <summary>The delay before the next attempt; grows with every call until <see cref="Reset"/>.</summary>
    public TimeSpan Next()
    {
        var exponent = Math.Min(_attempt, 30);
        _attempt++;
        var ceiling = Math.Min(_max.Ticks, _min.Ticks * Math.Pow(2, exponent));
        return TimeSpan.FromTicks((long)(ceiling * (0.5 + 0.5 * _random.NextDouble())));
    }

    /// <summary>Call after a success: the next delay starts from the minimum again.</summary>
    public void Reset() => _attempt = 0;
}
