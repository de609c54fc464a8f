using System.Collections.Concurrent;
using System.Net;
using FedEdge.Cloud.Ingestion;

namespace FedEdge.Cloud.Security;

/// <summary>
/// What a password guess costs the cloud. Failed logins are counted per user name and per source address in token
/// buckets on the cloud's clock (<see cref="CloudOptions.LoginFailureBurstPerName"/>, <see cref="CloudOptions.LoginFailureBurstPerAddress"/>,
/// one back every <see cref="CloudOptions.LoginFailureRefill"/>); once either is spent, logins under that name or from
/// that address are refused before any hashing until it refills. Unknown names get buckets like known ones, so the
/// lockout does not tell which names exist. The PBKDF2 check itself runs on the thread pool, at most
/// <see cref="CloudOptions.LoginHashConcurrency"/> at once, never on the broker's connection-handling threads; a login
/// finding that queue full is refused at once.
/// </summary>
public sealed class LoginThrottle
{
    /// <summary>Names and addresses tracked at most; beyond it idle (refilled) buckets are dropped, and if none is idle a
    /// new name or address is not tracked (the other bucket of the pair still applies).</summary>
    public const int MaxTracked = 100_000;

    private readonly TimeProvider _time;
    private readonly double _perSecond;
    private readonly int _perName;
    private readonly int _perAddress;
    private readonly ConcurrentDictionary<string, TokenBucket> _names = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<IPAddress, TokenBucket> _addresses = new();
    private readonly SemaphoreSlim _hashing;
    private readonly int _maxWaiting;
    private int _waiting;

    public LoginThrottle(TimeProvider time, int failuresPerName, int failuresPerAddress, TimeSpan refill, int hashConcurrency)
    {
        _time = time;
        _perName = failuresPerName;
        _perAddress = failuresPerAddress;
        _perSecond = 1 / refill.TotalSeconds;
        _hashing = new SemaphoreSlim(hashConcurrency, hashConcurrency);
        _maxWaiting = hashConcurrency * 16;
    }

    /// <summary>Logins refused without hashing (locked out, or the hashing queue full).</summary>
    public long Throttled => Interlocked.Read(ref _throttled);
    private long _throttled;

    /// <summary>Password checks run (PBKDF2).</summary>
    public long Hashed => Interlocked.Read(ref _hashed);
    private long _hashed;

    /// <summary>Why a login must be refused before its password is checked; null when it may be checked.</summary>
    public string? Refusal(string? userName, IPAddress? address)
    {
        if (address is not null && Find(_addresses, Normalize(address)) is { HasToken: false } a)
            return Throttle($"too many failed logins from this address; retry in {Math.Ceiling(a.UntilNextToken.TotalSeconds)} s");
        if (Find(_names, userName ?? "") is { HasToken: false } n)
            return Throttle($"too many failed logins for this name; retry in {Math.Ceiling(n.UntilNextToken.TotalSeconds)} s");
        return null;
    }

    private string Throttle(string why)
    {
        Interlocked.Increment(ref _throttled);
        return why;
    }

    /// <summary>Counts a failed login against its name (if given) and its address.</summary>
    public void Failed(string? userName, IPAddress? address)
    {
        if (address is not null) Track(_addresses, Normalize(address), _perAddress)?.Take();
        if (userName is not null) Track(_names, userName, _perName)?.Take();
    }

    /// <summary>Runs a password check on the thread pool within the concurrency bound; null when the queue is full.</summary>
    public async Task<(T Result, bool Ran)> HashAsync<T>(Func<T> check, CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref _waiting) > _maxWaiting)
        {
            Interlocked.Decrement(ref _waiting);
            Interlocked.Increment(ref _throttled);
            return (default!, false);
        }
        try
        {
            await _hashing.WaitAsync(cancellationToken);
            try
            {
                Interlocked.Increment(ref _hashed);
                return (await Task.Run(check, cancellationToken), true);
            }
            finally
            {
                _hashing.Release();
            }
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    private static TokenBucket? Find<TKey>(ConcurrentDictionary<TKey, TokenBucket> buckets, TKey key) where TKey : notnull =>
        buckets.TryGetValue(key, out var bucket) ? bucket : null;

    private TokenBucket? Track<TKey>(ConcurrentDictionary<TKey, TokenBucket> buckets, TKey key, int burst) where TKey : notnull
    {
        if (buckets.TryGetValue(key, out var bucket)) return bucket;
        if (buckets.Count >= MaxTracked)
        {
            foreach (var (k, b) in buckets)
                if (b.IsFull) buckets.TryRemove(k, out _);
            if (buckets.Count >= MaxTracked) return null;
        }
        return buckets.GetOrAdd(key, _ => new TokenBucket(_time, _perSecond, burst));
    }

    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
}
