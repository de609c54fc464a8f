using System.Threading.Channels;
using Amqp;
using Amqp.Framing;
using Amqp.Types;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ErrorCode = Amqp.ErrorCode;

namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>
/// Sends events to an Azure Event Hub over AMQP 1.0 (AMQPNetLite): SASL PLAIN with the SAS key name and key,
/// over TLS (amqps, 5671) or plain AMQP for the emulator; target address = the hub's name; the partition key as
/// the <c>x-opt-partition-key</c> message annotation; the body as one data section with content type
/// application/json. Producers hand events to a bounded in-memory queue and never wait on the network:
/// <see cref="TryEnqueue"/> drops (and counts) an event when the queue is full, <see cref="EnqueueAsync"/> waits
/// for room (back-pressure for producers that can). A single sender drains the queue in batches, sending
/// each batch pipelined on one link; a lost connection or link is reopened with exponential back-off and the
/// unsent rest of the batch is sent again (at-least-once; message ids let consumers drop duplicates).
/// </summary>
public sealed class EventHubsSink : BackgroundService
{
    private static readonly Symbol PartitionKeyAnnotation = new("x-opt-partition-key");

    // Outcomes that condemn the message itself, not the link: retrying would block the queue forever.
    private static readonly HashSet<string> PermanentConditions = new(StringComparer.Ordinal)
    {
        ErrorCode.MessageSizeExceeded, ErrorCode.DecodeError, ErrorCode.InvalidField, "amqp:not-allowed",
    };

    private readonly EventHubsOptions _options;
    private readonly EventHubsConnectionString _hub;
    private readonly ILogger<EventHubsSink> _logger;
    private readonly Channel<EventHubsEvent> _queue;
    private Connection? _connection;
    private Session? _session;
    private SenderLink? _sender;
    private long _sent, _dropped, _rejected, _retries, _connects;

    public EventHubsSink(IOptions<EventHubsOptions> options, ILogger<EventHubsSink> logger)
    {
        _options = options.Value;
        _hub = _options.Validate();
        _logger = logger;
        _queue = Channel.CreateBounded<EventHubsEvent>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });
    }

    /// <summary>Where events go (no key).</summary>
    public EventHubsConnectionString Hub => _hub;

    /// <summary>Events the hub accepted.</summary>
    public long Sent => Interlocked.Read(ref _sent);

    /// <summary>Events refused by <see cref="TryEnqueue"/> because the queue was full.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Events the hub rejected for good (too large, malformed); logged and not retried.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Failed connects or sends that were retried.</summary>
    public long Retries => Interlocked.Read(ref _retries);

    /// <summary>Connections opened (the first, then one per reconnect).</summary>
    public long Connects => Interlocked.Read(ref _connects);

    public int Queued => _queue.Reader.Count;

    /// <summary>Queues an event without waiting; false (and counted in <see cref="Dropped"/>) when the queue is full.</summary>
    public bool TryEnqueue(EventHubsEvent item)
    {
        Check(item);
        if (_queue.Writer.TryWrite(item)) return true;
        if (Interlocked.Increment(ref _dropped) is var dropped && (dropped & (dropped - 1)) == 0) // log at 1, 2, 4, 8, …
            _logger.LogWarning("Event Hubs queue full ({Capacity}); {Dropped} event(s) dropped so far", _options.QueueCapacity, dropped);
        return false;
    }

    /// <summary>Queues an event, waiting while the queue is full.</summary>
    public ValueTask EnqueueAsync(EventHubsEvent item, CancellationToken cancellationToken)
    {
        Check(item);
        return _queue.Writer.WriteAsync(item, cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _logger.LogInformation("Event Hubs sink sending to {Hub}", _hub);
        var batch = new List<EventHubsEvent>(_options.MaxBatchSize);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken))
            {
                Fill(batch);
                await SendWithRetryAsync(batch, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            await DrainAsync(batch);
        }
        finally
        {
            await CloseAsync();
        }
    }

    private void Fill(List<EventHubsEvent> batch)
    {
        while (batch.Count < _options.MaxBatchSize && _queue.Reader.TryRead(out var item)) batch.Add(item);
    }

    private async Task SendWithRetryAsync(List<EventHubsEvent> batch, CancellationToken cancellationToken)
    {
        var delay = _options.InitialRetryDelay;
        while (batch.Count > 0)
        {
            Exception? failure;
            try
            {
                var sender = await OpenAsync(cancellationToken);
                failure = await SendBatchAsync(sender, batch);
            }
            catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                failure = e;
            }
            if (failure is null) return;

            Interlocked.Increment(ref _retries);
            _logger.LogWarning(failure is AmqpException or TimeoutException or System.Net.Sockets.SocketException ? null : failure,
                "Event Hubs send to {Hub} failed ({Error}); {Count} event(s) retried in {Delay}", _hub, failure.Message, batch.Count, delay);
            await CloseAsync();
            await Task.Delay(Jitter(delay), cancellationToken);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxRetryDelay.Ticks));
        }
    }

    /// <summary>Sends the batch pipelined; removes what was settled (accepted or rejected for good); returns the first transient failure.</summary>
    private async Task<Exception?> SendBatchAsync(SenderLink sender, List<EventHubsEvent> batch)
    {
        var sends = new Task[batch.Count];
        for (var i = 0; i < batch.Count; i++) sends[i] = sender.SendAsync(ToMessage(batch[i]), _options.SendTimeout);
        try
        {
            await Task.WhenAll(sends);
        }
        catch
        {
            // Outcomes are read one by one below.
        }

        Exception? transient = null;
        var kept = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            var send = sends[i];
            if (send.IsCompletedSuccessfully)
            {
                Interlocked.Increment(ref _sent);
                continue;
            }
            var error = send.Exception?.GetBaseException() ?? new TaskCanceledException();
            if (error is AmqpException amqp && !sender.IsClosed && PermanentConditions.Contains(amqp.Error.Condition.ToString()))
            {
                Interlocked.Increment(ref _rejected);
                _logger.LogError("Event Hubs rejected event {MessageId} ({Type}, partition key {PartitionKey}, {Bytes} bytes): {Condition} {Description}; dropped",
                    batch[i].MessageId, batch[i].Type, batch[i].PartitionKey, batch[i].Body.Length, amqp.Error.Condition, amqp.Error.Description);
                continue;
            }
            transient ??= error;
            batch[kept++] = batch[i];
        }
        batch.RemoveRange(kept, batch.Count - kept);
        return transient;
    }

    private async Task<SenderLink> OpenAsync(CancellationToken cancellationToken)
    {
        if (_sender is { IsClosed: false } && _session is { IsClosed: false } && _connection is { IsClosed: false }) return _sender;
        await CloseAsync();
        var address = new Address(_hub.Host, _hub.Port, _hub.SharedAccessKeyName, _hub.SharedAccessKey, "/", _hub.UseTls ? "amqps" : "amqp");
        var factory = new ConnectionFactory();
        factory.AMQP.ContainerId = $"fededge-cloud-{Environment.MachineName}-{Guid.NewGuid():N}";
        factory.AMQP.HostName = _hub.Host; // Event Hubs routes the connection by the namespace's host name.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.SendTimeout);
        _connection = await factory.CreateAsync(address, timeout.Token);
        _session = new Session(_connection);
        var attached = new TaskCompletionSource<Error?>(TaskCreationOptions.RunContinuationsAsynchronously);
        _sender = new SenderLink(_session, $"fededge-sender-{Guid.NewGuid():N}", new Target { Address = _hub.EntityPath },
            (link, attach) => attached.TrySetResult(null));
        _sender.Closed += (_, error) => attached.TrySetResult(error ?? new Error(ErrorCode.DetachForced) { Description = "link closed while attaching" });
        var refused = await attached.Task.WaitAsync(_options.SendTimeout, cancellationToken);
        if (refused is not null) throw new AmqpException(refused);
        Interlocked.Increment(ref _connects);
        _logger.LogInformation("Event Hubs sink connected to {Hub}", _hub);
        return _sender;
    }

    private async Task CloseAsync()
    {
        var (connection, sender) = (_connection, _sender);
        (_connection, _session, _sender) = (null, null, null);
        if (connection is null) return;
        try
        {
            if (sender is { IsClosed: false }) await sender.CloseAsync(TimeSpan.FromSeconds(2));
            if (!connection.IsClosed) await connection.CloseAsync(TimeSpan.FromSeconds(2));
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "Closing the Event Hubs connection failed");
        }
    }

    /// <summary>On shutdown: what is queued (and the unsent batch) gets one more try within <see cref="EventHubsOptions.DrainTimeout"/>.</summary>
    private async Task DrainAsync(List<EventHubsEvent> batch)
    {
        using var deadline = new CancellationTokenSource(_options.DrainTimeout);
        try
        {
            do
            {
                Fill(batch);
                if (batch.Count == 0) break;
                await SendWithRetryAsync(batch, deadline.Token);
            }
            while (!deadline.IsCancellationRequested);
        }
        catch (OperationCanceledException)
        {
        }
        var left = batch.Count + _queue.Reader.Count;
        if (left > 0) _logger.LogWarning("Event Hubs sink stopped with {Count} event(s) unsent", left);
    }

    private static Message ToMessage(EventHubsEvent item)
    {
        var message = new Message
        {
            BodySection = new Data { Binary = item.Body.ToArray() },
            Properties = new Properties { ContentType = "application/json", MessageId = item.MessageId, CreationTime = DateTime.UtcNow },
            MessageAnnotations = new MessageAnnotations(),
            ApplicationProperties = new ApplicationProperties(),
        };
        message.MessageAnnotations[PartitionKeyAnnotation] = item.PartitionKey;
        message.ApplicationProperties["fededge-type"] = item.Type;
        return message;
    }

    private static void Check(EventHubsEvent item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (string.IsNullOrEmpty(item.PartitionKey) || item.PartitionKey.Length > EventHubsEvent.MaxPartitionKeyLength)
            throw new ArgumentException($"Event Hubs partition key '{item.PartitionKey}' must have 1–{EventHubsEvent.MaxPartitionKeyLength} characters", nameof(item));
    }

    private static TimeSpan Jitter(TimeSpan delay) => delay * (0.8 + 0.4 * Random.Shared.NextDouble());
}
