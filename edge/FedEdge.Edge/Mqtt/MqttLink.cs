using System.Buffers;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Edge.Mqtt;

/// <summary>A message received on one of the link's subscriptions.</summary>
public sealed record MqttInboundMessage(string Topic, ReadOnlyMemory<byte> Payload, bool Retain);

/// <summary>
/// A device's MQTT v5 connection that keeps itself up: persistent session (CleanStart = false with a session
/// expiry, so the broker keeps subscriptions and queued QoS 1 messages while the device is away), username and
/// password, a retained "offline" last will and a retained "online" status on every connect, and reconnection
/// with exponential backoff and jitter. Subscriptions are re-issued on every connect (idempotent on the broker),
/// which also redelivers retained messages. Received messages go to <see cref="Inbound"/>.
/// </summary>
public sealed partial class MqttLink : IAsyncDisposable
{
    private readonly MqttLinkOptions _options;
    private readonly IMqttClient _client;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private readonly ExponentialBackoff _backoff;
    private readonly Channel<MqttInboundMessage> _inbound = Channel.CreateUnbounded<MqttInboundMessage>(new() { SingleReader = true });
    private readonly HashSet<string> _subscriptions;
    private readonly object _stateLock = new();
    private TaskCompletionSource _connected = NewSignal();
    private TaskCompletionSource _lost = NewSignal();
    private CancellationTokenSource? _stopping;
    private Task? _loop;
    private CancellationToken _startToken;
    private bool _stopped;
    private int _connectCount;
    private int _failedConnectAttempts;

    public MqttLink(MqttLinkOptions options, IMqttClientFactory? clientFactory = null, ILogger<MqttLink>? logger = null, TimeProvider? clock = null, Random? random = null)
    {
        _options = options;
        _client = (clientFactory ?? new MqttNetClientFactory()).CreateClient();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _clock = clock ?? TimeProvider.System;
        _backoff = new ExponentialBackoff(options.ReconnectMinDelay, options.ReconnectMaxDelay, random);
        _subscriptions = new HashSet<string>(options.Subscriptions, StringComparer.Ordinal);
        _client.ApplicationMessageReceivedAsync += OnMessageReceivedAsync;
        _client.DisconnectedAsync += OnDisconnectedAsync;
    }

    /// <summary>Messages received on the subscriptions, in arrival order.</summary>
    public ChannelReader<MqttInboundMessage> Inbound => _inbound.Reader;

    public bool IsConnected => _client.IsConnected && _connected.Task.IsCompleted;

    /// <summary>Successful connects so far (the first one included).</summary>
    public int ConnectCount => Volatile.Read(ref _connectCount);

    /// <summary>Connection attempts that failed (refused login, unreachable broker, ...), each followed by a back-off.</summary>
    public int FailedConnectAttempts => Volatile.Read(ref _failedConnectAttempts);

    /// <summary>Starts connecting in the background; returns at once.</summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_loop is not null)
            throw new InvalidOperationException("MqttLink is already started.");
        _startToken = cancellationToken;
        StartLoop();
        return Task.CompletedTask;
    }

    /// <summary>
    /// Takes the link down until <see cref="Resume"/>, as a device that goes off the network for a while: stops
    /// reconnecting, publishes the "offline" status and disconnects, keeping the broker-side session (which queues the
    /// QoS 1 messages meanwhile). <see cref="Inbound"/> stays open; publishing fails as while the link is lost.
    /// </summary>
    public Task SuspendAsync(CancellationToken cancellationToken = default)
    {
        if (_stopping is null)
            throw new InvalidOperationException("MqttLink is not started.");
        return DisconnectAsync(cancellationToken);
    }

    /// <summary>Connects again after <see cref="SuspendAsync"/> (in the background, like <see cref="StartAsync"/>).</summary>
    public void Resume()
    {
        if (_stopping is null || _loop is null)
            throw new InvalidOperationException("MqttLink is not started.");
        if (_stopped)
            throw new InvalidOperationException("MqttLink is stopped.");
        if (!_stopping.IsCancellationRequested)
            return;
        _stopping.Dispose();
        StartLoop();
    }

    private void StartLoop()
    {
        _stopping = CancellationTokenSource.CreateLinkedTokenSource(_startToken);
        var stopping = _stopping.Token;
        _loop = Task.Run(() => RunAsync(stopping), CancellationToken.None);
    }

    /// <summary>Completes when the link is connected and its subscriptions are in place.</summary>
    public Task WaitUntilConnectedAsync(CancellationToken cancellationToken = default)
    {
        lock (_stateLock)
            return _connected.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Completes when the current connection is lost (at once if not connected).</summary>
    public Task WaitUntilDisconnectedAsync(CancellationToken cancellationToken = default)
    {
        lock (_stateLock)
            return _connected.Task.IsCompleted ? _lost.Task.WaitAsync(cancellationToken) : Task.CompletedTask;
    }

    /// <summary>
    /// Publishes with QoS 1 and returns after the broker's PUBACK. Throws
    /// <see cref="MQTTnet.Exceptions.MqttClientNotConnectedException"/> (or another MQTT communication exception)
    /// when the link is down, and <see cref="MqttPublishRejectedException"/> when the broker refuses the message.
    /// </summary>
    public async Task PublishAsync(string topic, ReadOnlyMemory<byte> payload, bool retain = false, CancellationToken cancellationToken = default)
    {
        var message = new MqttApplicationMessageBuilder()
            .WithTopic(topic)
            .WithPayload(new ReadOnlySequence<byte>(payload))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithRetainFlag(retain)
            .Build();
        var result = await _client.PublishAsync(message, cancellationToken).ConfigureAwait(false);
        if (!result.IsSuccess)
            throw new MqttPublishRejectedException(topic, result.ReasonCode, result.ReasonString);
    }

    /// <summary>Adds a subscription (QoS 1) now if connected and on every later connect.</summary>
    public async Task SubscribeAsync(string topicFilter, CancellationToken cancellationToken = default)
    {
        lock (_subscriptions)
        {
            if (!_subscriptions.Add(topicFilter))
                return;
        }
        // Not IsConnected: messages arrive while the connect handler is still subscribing, and a filter added
        // then must not wait for the next connect. Subscribing twice is harmless.
        if (_client.IsConnected)
        {
            try
            {
                await SubscribeNowAsync([topicFilter], cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or MQTTnet.Exceptions.MqttClientNotConnectedException)
            {
                // Lost meanwhile: the next connect subscribes it from the set.
                LogSubscribeDeferred(topicFilter, e.Message);
            }
        }
    }

    /// <summary>Removes a subscription added by <see cref="SubscribeAsync"/>.</summary>
    public async Task UnsubscribeAsync(string topicFilter, CancellationToken cancellationToken = default)
    {
        lock (_subscriptions)
        {
            if (!_subscriptions.Remove(topicFilter))
                return;
        }
        if (_client.IsConnected)
        {
            try
            {
                await _client.UnsubscribeAsync(topicFilter, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or MQTTnet.Exceptions.MqttClientNotConnectedException)
            {
                // The session may keep it; a stale subscription only delivers messages the receiver ignores.
                LogUnsubscribeFailed(topicFilter, e.Message);
            }
        }
    }

    /// <summary>
    /// Stops reconnecting; if connected, publishes the "offline" status (a clean shutdown does not trigger the
    /// last will) and disconnects, keeping the broker-side session.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (_stopping is null)
            return;
        _stopped = true;
        await DisconnectAsync(cancellationToken).ConfigureAwait(false);
        _inbound.Writer.TryComplete();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _client.Dispose();
        _stopping?.Dispose();
    }

    /// <summary>Stops the connection loop; if connected, publishes the "offline" status and disconnects, keeping the session.</summary>
    private async Task DisconnectAsync(CancellationToken cancellationToken)
    {
        await _stopping!.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
            await _loop.ConfigureAwait(false);
        if (_client.IsConnected)
        {
            try
            {
                if (_options.StatusTopic is { } status)
                    await PublishAsync(status, _options.OfflinePayload, retain: true, cancellationToken).ConfigureAwait(false);
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder()
                    .WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection)
                    .WithSessionExpiryInterval((uint)_options.SessionExpiry.TotalSeconds)
                    .Build(), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogStopFailed(e.Message);
            }
        }
    }

    private async Task RunAsync(CancellationToken stopping)
    {
        var clientOptions = BuildClientOptions();
        while (!stopping.IsCancellationRequested)
        {
            TaskCompletionSource lost;
            lock (_stateLock)
                lost = _lost = NewSignal();
            try
            {
                var result = await _client.ConnectAsync(clientOptions, stopping).ConfigureAwait(false);
                if (result.ResultCode != MqttClientConnectResultCode.Success)
                    throw new InvalidOperationException($"Broker refused the connection: {result.ResultCode} {result.ReasonString}");
                await OnConnectedAsync(result, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref _failedConnectAttempts);
                var delay = _backoff.Next();
                LogConnectFailed(_options.Broker, _backoff.Attempt, delay.TotalSeconds, e.Message);
                if (_client.IsConnected)
                    await _client.TryDisconnectAsync().ConfigureAwait(false);
                if (!await DelayAsync(delay, stopping).ConfigureAwait(false))
                    return;
                continue;
            }

            try
            {
                await lost.Task.WaitAsync(stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var reconnectDelay = _backoff.Next();
            LogReconnecting(reconnectDelay.TotalSeconds);
            if (!await DelayAsync(reconnectDelay, stopping).ConfigureAwait(false))
                return;
        }
    }

    private async Task OnConnectedAsync(MqttClientConnectResult result, CancellationToken cancellationToken)
    {
        string[] filters;
        lock (_subscriptions)
            filters = [.. _subscriptions];
        if (filters.Length > 0)
            await SubscribeNowAsync(filters, cancellationToken).ConfigureAwait(false);
        if (_options.StatusTopic is { } status)
            await PublishAsync(status, _options.OnlinePayload, retain: true, cancellationToken).ConfigureAwait(false);
        _backoff.Reset();
        Interlocked.Increment(ref _connectCount);
        lock (_stateLock)
            _connected.TrySetResult();
        LogConnected(_options.Broker, _options.ClientId, result.IsSessionPresent);
    }

    private async Task SubscribeNowAsync(IEnumerable<string> filters, CancellationToken cancellationToken)
    {
        var builder = new MqttClientSubscribeOptionsBuilder();
        foreach (var filter in filters)
            builder.WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce, noLocal: false, retainAsPublished: true, MqttRetainHandling.SendAtSubscribe);
        var result = await _client.SubscribeAsync(builder.Build(), cancellationToken).ConfigureAwait(false);
        foreach (var item in result.Items)
        {
            if (item.ResultCode > MqttClientSubscribeResultCode.GrantedQoS2)
                throw new InvalidOperationException($"Broker refused subscription to '{item.TopicFilter.Topic}': {item.ResultCode}");
        }
    }

    private Task OnMessageReceivedAsync(MqttApplicationMessageReceivedEventArgs e)
    {
        var message = e.ApplicationMessage;
        _inbound.Writer.TryWrite(new MqttInboundMessage(message.Topic, message.Payload.ToArray(), message.Retain));
        return Task.CompletedTask;
    }

    private Task OnDisconnectedAsync(MqttClientDisconnectedEventArgs e)
    {
        if (!e.ClientWasConnected)
            return Task.CompletedTask;
        TaskCompletionSource lost;
        lock (_stateLock)
        {
            lost = _lost;
            if (_connected.Task.IsCompleted)
                _connected = NewSignal();
        }
        LogDisconnected(e.Reason.ToString(), e.Exception?.Message ?? e.ReasonString ?? "");
        lost.TrySetResult();
        return Task.CompletedTask;
    }

    private MqttClientOptions BuildClientOptions()
    {
        var broker = _options.Broker;
        var builder = new MqttClientOptionsBuilder()
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithClientId(_options.ClientId)
            .WithCleanStart(false)
            .WithSessionExpiryInterval((uint)_options.SessionExpiry.TotalSeconds)
            .WithKeepAlivePeriod(_options.KeepAlive)
            .WithTimeout(_options.ConnectTimeout)
            .WithTcpServer(broker.Host, broker.IsDefaultPort ? null : broker.Port);
        if (broker.Scheme is "mqtts" or "ssl" or "tls")
            builder.WithTlsOptions(TlsOptions);
        if (_options.UserName is not null)
            builder.WithCredentials(_options.UserName, _options.Password ?? "");
        if (_options.MaximumPacketSize > 0)
            builder.WithMaximumPacketSize(_options.MaximumPacketSize);
        if (_options.StatusTopic is { } status)
        {
            builder.WithWillTopic(status)
                .WithWillPayload(_options.OfflinePayload.ToArray())
                .WithWillRetain(true)
                .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce);
        }
        return builder.Build();
    }

    private void TlsOptions(MqttClientTlsOptionsBuilder tls)
    {
        tls.UseTls().WithSslProtocols(System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13);
        if (_options.TrustedRoots is { } roots)
        {
            var validator = new FedEdge.Protocol.Tls.PinnedChainValidator(roots, FedEdge.Protocol.Tls.PinnedChainValidator.Usage.Server);
            // Chain errors against the system store are expected (a private CA); the pinned chain is built instead.
            tls.WithCertificateValidationHandler(e => validator.Validate(e.Certificate, e.SslPolicyErrors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors, e.Chain));
        }
        if (_options.ClientCertificate is { } certificate)
            tls.WithClientCertificates([certificate]);
    }

    private async Task<bool> DelayAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, _clock, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "MQTT connected to {Broker} as {ClientId} (session present: {SessionPresent})")]
    private partial void LogConnected(Uri broker, string clientId, bool sessionPresent);

    [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "MQTT connect to {Broker} failed (attempt {Attempt}); retrying in {DelaySeconds:F1} s: {Error}")]
    private partial void LogConnectFailed(Uri broker, int attempt, double delaySeconds, string error);

    [LoggerMessage(EventId = 202, Level = LogLevel.Warning, Message = "MQTT disconnected ({Reason}): {Detail}")]
    private partial void LogDisconnected(string reason, string detail);

    [LoggerMessage(EventId = 203, Level = LogLevel.Information, Message = "MQTT reconnecting in {DelaySeconds:F1} s")]
    private partial void LogReconnecting(double delaySeconds);

    [LoggerMessage(EventId = 204, Level = LogLevel.Warning, Message = "MQTT unsubscribe from {TopicFilter} failed: {Error}")]
    private partial void LogUnsubscribeFailed(string topicFilter, string error);

    [LoggerMessage(EventId = 206, Level = LogLevel.Information, Message = "MQTT subscription to {TopicFilter} deferred to the next connect: {Error}")]
    private partial void LogSubscribeDeferred(string topicFilter, string error);

    [LoggerMessage(EventId = 205, Level = LogLevel.Warning, Message = "MQTT clean stop failed: {Error}")]
    private partial void LogStopFailed(string error);
}
