using FedEdge.Edge.Mqtt;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge.Outbox;

/// <summary>
/// Drains an <see cref="UpdateOutbox"/> over a <see cref="MqttLink"/>: oldest item first, one at a time, each
/// removed only after every MQTT message it maps to has been acknowledged (QoS 1 PUBACK). While the link is
/// down it waits; after a reconnect the unacknowledged item is sent again (at-least-once; the cloud
/// de-duplicates by update id). One sender per outbox, so nothing is sent twice by the device itself.
/// </summary>
public sealed partial class OutboxSender
{
    private readonly UpdateOutbox _outbox;
    private readonly MqttLink _link;
    private readonly string _topic;
    private readonly Func<OutboxItem, IReadOnlyList<ReadOnlyMemory<byte>>> _frames;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private readonly TimeSpan _publishTimeout;
    private long _sent;
    private long _bytesSent;

    /// <param name="topic">The device's update topic.</param>
    /// <param name="frames">Splits an item into the MQTT payloads to publish (for example chunks of a large
    /// envelope); by default the item's payload is sent as one message.</param>
    /// <param name="publishTimeout">How long one item may wait for its acknowledgements. A stop does not cut an
    /// item short: it waits up to this long, so an item the broker already has is not sent again after a restart.</param>
    public OutboxSender(UpdateOutbox outbox, MqttLink link, string topic,
        Func<OutboxItem, IReadOnlyList<ReadOnlyMemory<byte>>>? frames = null, ILogger<OutboxSender>? logger = null, TimeProvider? clock = null,
        TimeSpan? publishTimeout = null)
    {
        _publishTimeout = publishTimeout ?? TimeSpan.FromSeconds(30);
        _outbox = outbox;
        _link = link;
        _topic = topic;
        _frames = frames ?? (item => [item.Payload]);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _clock = clock ?? TimeProvider.System;
    }

    /// <summary>Items acknowledged by the broker and removed from the outbox.</summary>
    public long SentCount => Interlocked.Read(ref _sent);

    /// <summary>Payload bytes of the acknowledged items' messages.</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Raised after an item was acknowledged and removed.</summary>
    public event Action<OutboxItem>? ItemSent;

    /// <summary>Sends until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var retry = new ExponentialBackoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(30));
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await _outbox.WaitForItemsAsync(cancellationToken).ConfigureAwait(false);
                await _link.WaitUntilConnectedAsync(cancellationToken).ConfigureAwait(false);
                var item = await _outbox.PeekAsync(cancellationToken).ConfigureAwait(false);
                if (item is null)
                    continue;
                await SendAsync(item).ConfigureAwait(false);
                retry.Reset();
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Link lost mid-send, broker busy or a file error: wait and try the same item again.
                var delay = retry.Next();
                LogSendFailed(delay.TotalSeconds, e.Message);
                try
                {
                    await Task.Delay(delay, _clock, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task SendAsync(OutboxItem item)
    {
        using var timeout = new CancellationTokenSource(_publishTimeout, _clock);
        var cancellationToken = timeout.Token;
        long bytes = 0;
        try
        {
            foreach (var frame in _frames(item))
            {
                await _link.PublishAsync(_topic, frame, retain: false, cancellationToken).ConfigureAwait(false);
                bytes += frame.Length;
            }
        }
        catch (MqttPublishRejectedException e) when (e.IsPermanent)
        {
            await _outbox.RejectAsync(item, e.Message, cancellationToken).ConfigureAwait(false);
            return;
        }
        await _outbox.RemoveAsync(item, cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _sent);
        Interlocked.Add(ref _bytesSent, bytes);
        LogSent(item.UpdateId, item.Sequence, bytes, (_clock.GetUtcNow() - item.EnqueuedAt).TotalSeconds);
        ItemSent?.Invoke(item);
    }

    [LoggerMessage(EventId = 110, Level = LogLevel.Information, Message = "Update {UpdateId} (outbox #{Sequence}, {Bytes} bytes) acknowledged by the broker after {WaitSeconds:F1} s in the outbox")]
    private partial void LogSent(string updateId, long sequence, long bytes, double waitSeconds);

    [LoggerMessage(EventId = 111, Level = LogLevel.Warning, Message = "Sending from the outbox failed; retrying in {DelaySeconds:F1} s: {Error}")]
    private partial void LogSendFailed(double delaySeconds, string error);
}
