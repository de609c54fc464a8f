using Azure.Messaging.EventHubs;
using Azure.Messaging.EventHubs.Producer;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>
/// Sends events to an Azure Event Hub through the Azure SDK (<see cref="EventHubProducerClient"/>), with a durable,
/// bounded backlog in front (<see cref="EventHubsBacklog"/>). <see cref="TryEnqueue"/> appends the event to the
/// backlog on disk and never waits on the network; when the backlog is full it refuses (counted in
/// <see cref="Dropped"/>, logged) and loses nothing already accepted. One sender reads pending events in append
/// order, groups them by partition key (order kept within a key) into size-bounded <see cref="EventDataBatch"/>es
/// with that key, and sends them; the SDK retries each send (<see cref="EventHubsRetryOptions"/>), and after its
/// retries the sender backs off itself and tries again, for as long as it takes. Events leave the backlog only
/// after the SDK confirmed their send, so an unreachable hub or a restart of the cloud loses nothing: delivery is
/// at least once (a crash between the hub's confirmation and the backlog's cursor write sends again), and every
/// event carries a message id to drop duplicates by.
/// </summary>
public sealed class EventHubsSink : BackgroundService
{
    // One read of the backlog; its events are all confirmed before the next read, which keeps each key in order.
    private const int RunEvents = 1024;
    private const long RunBytes = 8L * 1024 * 1024;

    private readonly EventHubsOptions _options;
    private readonly EventHubsConnectionString _hub;
    private readonly ILogger<EventHubsSink> _logger;
    private readonly TimeProvider _time;
    private readonly EventHubsBacklog _backlog;
    private long _sent, _dropped, _rejected, _retries, _batches;

    public EventHubsSink(IOptions<EventHubsOptions> options, ILogger<EventHubsSink> logger, TimeProvider? timeProvider = null)
    {
        _options = options.Value;
        _hub = _options.Validate();
        _logger = logger;
        _time = timeProvider ?? TimeProvider.System;
        _backlog = EventHubsBacklog.Open(_options.BacklogDirectory!, _options.BacklogCapacityBytes, _options.QueueCapacity,
            _options.BacklogSegmentBytes, logger);
    }

    /// <summary>Where events go (no key).</summary>
    public EventHubsConnectionString Hub => _hub;

    /// <summary>Events the hub confirmed.</summary>
    public long Sent => Interlocked.Read(ref _sent);

    /// <summary>Batches the hub confirmed.</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Events refused by <see cref="TryEnqueue"/> because the backlog was full (or its disk failed).</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Events the hub cannot take (larger than its message size); logged and not retried.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Sends that failed after the SDK's own retries and were tried again by the sink.</summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <summary>Events accepted and not yet confirmed by the hub.</summary>
    public int Queued => _backlog.PendingCount;

    /// <summary>Bytes of the backlog not yet confirmed.</summary>
    public long BacklogBytes => _backlog.PendingBytes;

    /// <summary>
    /// Appends the event to the durable backlog without waiting on the network; false (counted in
    /// <see cref="Dropped"/>, logged) when the backlog is full. Throws <see cref="ArgumentException"/> for an event
    /// that can never be sent (partition key or body size).
    /// </summary>
    public bool TryEnqueue(EventHubsEvent item)
    {
        Check(item);
        item = item with { MessageId = item.MessageId ?? Guid.NewGuid().ToString("N"), AcceptedAt = _time.GetUtcNow() };
        try
        {
            if (_backlog.TryAppend(item)) return true;
            if (Interlocked.Increment(ref _dropped) is var dropped && (dropped & (dropped - 1)) == 0) // log at 1, 2, 4, 8, …
                _logger.LogWarning(
                    "Event Hubs backlog full ({PendingBytes} of {CapacityBytes} bytes, {PendingEvents} of {CapacityEvents} events): event {MessageId} ({Type}, partition key {PartitionKey}) refused; {Dropped} refused so far",
                    _backlog.PendingBytes, _backlog.CapacityBytes, _backlog.PendingCount, _backlog.CapacityEvents, item.MessageId, item.Type, item.PartitionKey, dropped);
        }
        catch (IOException e)
        {
            Interlocked.Increment(ref _dropped);
            _logger.LogError(e, "Event Hubs backlog could not store event {MessageId} ({Type}); refused", item.MessageId, item.Type);
        }
        return false;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await using var producer = CreateProducer();
        _logger.LogInformation("Event Hubs sink sending to {Hub}; {Pending} event(s) in the backlog", _hub, _backlog.PendingCount);
        try
        {
            while (true)
            {
                await _backlog.WaitForPendingAsync(stoppingToken);
                await SendPendingAsync(producer, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            await DrainAsync(producer);
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _backlog.Dispose();
    }

    private EventHubProducerClient CreateProducer()
    {
        var options = new EventHubProducerClientOptions
        {
            RetryOptions = new EventHubsRetryOptions
            {
                Mode = EventHubsRetryMode.Exponential,
                MaximumRetries = _options.MaxRetries,
                Delay = _options.InitialRetryDelay,
                MaximumDelay = _options.MaxRetryDelay,
                TryTimeout = _options.SendTimeout,
            },
            Identifier = $"fededge-cloud-{Environment.MachineName}",
        };
        // A hub-level connection string names the hub itself; the SDK refuses a second name beside it.
        var hubInString = EventHubsConnectionStringProperties.Parse(_options.ConnectionString!).EventHubName is { Length: > 0 };
        return hubInString
            ? new EventHubProducerClient(_options.ConnectionString, options)
            : new EventHubProducerClient(_options.ConnectionString, _hub.EntityPath, options);
    }

    /// <summary>Sends one run of pending events until the hub confirmed all of them, then moves the backlog's cursor.</summary>
    private async Task SendPendingAsync(EventHubProducerClient producer, CancellationToken cancellationToken)
    {
        var run = _backlog.ReadPending(RunEvents, RunBytes);
        if (run.Count == 0) return;
        var done = new bool[run.Count];
        var delay = _options.InitialRetryDelay;
        while (true)
        {
            try
            {
                await SendRunAsync(producer, run, done, cancellationToken);
                _backlog.Acknowledge(run[^1].EndOffset, run.Count);
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Interlocked.Increment(ref _retries);
                _logger.LogWarning(e is EventHubsException or TimeoutException or UnauthorizedAccessException ? null : e,
                    "Event Hubs send to {Hub} failed ({Error}); {Count} event(s) kept in the backlog, retried in {Delay}",
                    _hub, e.Message, done.Count(d => !d), delay);
                await Task.Delay(Jitter(delay), _time, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxRetryDelay.Ticks));
            }
        }
    }

    /// <summary>Sends what of the run is not done yet, key by key in order of first appearance, in bounded batches.</summary>
    private async Task SendRunAsync(EventHubProducerClient producer, IReadOnlyList<BacklogRecord> run, bool[] done, CancellationToken cancellationToken)
    {
        var byKey = Enumerable.Range(0, run.Count).Where(i => !done[i]).GroupBy(i => run[i].Event.PartitionKey, StringComparer.Ordinal);
        foreach (var key in byKey)
        {
            var members = new List<int>(_options.MaxBatchSize);
            var batch = await producer.CreateBatchAsync(new CreateBatchOptions { PartitionKey = key.Key }, cancellationToken);
            try
            {
                foreach (var index in key)
                {
                    var data = ToEventData(run[index].Event);
                    if (members.Count < _options.MaxBatchSize && batch.TryAdd(data))
                    {
                        members.Add(index);
                        continue;
                    }
                    if (members.Count > 0)
                    {
                        await SendBatchAsync(producer, batch, members, done, cancellationToken);
                        batch.Dispose();
                        batch = await producer.CreateBatchAsync(new CreateBatchOptions { PartitionKey = key.Key }, cancellationToken);
                    }
                    if (batch.TryAdd(data))
                    {
                        members.Add(index);
                        continue;
                    }
                    // Larger than the hub's message size on its own: it can never be sent.
                    done[index] = true;
                    Interlocked.Increment(ref _rejected);
                    _logger.LogError("Event Hubs cannot take event {MessageId} ({Type}, partition key {PartitionKey}, {Bytes} bytes): larger than the hub's {MaxBytes}-byte message size; dropped",
                        run[index].Event.MessageId, run[index].Event.Type, key.Key, run[index].Event.Body.Length, batch.MaximumSizeInBytes);
                }
                if (members.Count > 0) await SendBatchAsync(producer, batch, members, done, cancellationToken);
            }
            finally
            {
                batch.Dispose();
            }
        }
    }

    private async Task SendBatchAsync(EventHubProducerClient producer, EventDataBatch batch, List<int> members, bool[] done, CancellationToken cancellationToken)
    {
        await producer.SendAsync(batch, cancellationToken);
        foreach (var index in members) done[index] = true;
        Interlocked.Add(ref _sent, members.Count);
        Interlocked.Increment(ref _batches);
        members.Clear();
    }

    /// <summary>On shutdown: pending events get <see cref="EventHubsOptions.DrainTimeout"/> more; what is left stays in the backlog.</summary>
    private async Task DrainAsync(EventHubProducerClient producer)
    {
        using var deadline = new CancellationTokenSource(_options.DrainTimeout, _time);
        try
        {
            while (_backlog.PendingCount > 0) await SendPendingAsync(producer, deadline.Token);
        }
        catch (OperationCanceledException)
        {
        }
        if (_backlog.PendingCount > 0)
            _logger.LogWarning("Event Hubs sink stopped with {Count} event(s) ({Bytes} bytes) unsent; they stay in the backlog for the next start",
                _backlog.PendingCount, _backlog.PendingBytes);
    }

    private static EventData ToEventData(EventHubsEvent item)
    {
        var data = new EventData(item.Body) { ContentType = "application/json", MessageId = item.MessageId };
        data.Properties["fededge-type"] = item.Type;
        data.Properties["fededge-accepted-at"] = item.AcceptedAt.ToUnixTimeMilliseconds();
        return data;
    }

    private void Check(EventHubsEvent item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (string.IsNullOrEmpty(item.PartitionKey) || item.PartitionKey.Length > EventHubsEvent.MaxPartitionKeyLength)
            throw new ArgumentException($"Event Hubs partition key '{item.PartitionKey}' must have 1–{EventHubsEvent.MaxPartitionKeyLength} characters", nameof(item));
        if (item.Body.Length > _options.MaxEventBytes)
            throw new ArgumentException($"Event Hubs event {item.MessageId} ({item.Type}) has {item.Body.Length} bytes; at most {_options.MaxEventBytes} (Telemetry:EventHubs:MaxEventBytes)", nameof(item));
    }

    private static TimeSpan Jitter(TimeSpan delay) => delay * (0.8 + 0.4 * Random.Shared.NextDouble());
}
