using FedEdge.Cloud.Security;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// The cloud's own MQTT client, logged in as the privileged service identity, to the embedded broker or an
/// external one alike. It keeps a persistent session (so updates published while the cloud is down are
/// delivered when it returns), reconnects with back-off, and lets the ingestion bridge take messages
/// and acknowledge them only after they are persisted.
/// </summary>
public sealed class MqttServiceConnection : BackgroundService
{
    private readonly CloudOptions _options;
    private readonly ServiceIdentity _identity;
    private readonly IServiceProvider _services;
    private readonly ILogger<MqttServiceConnection> _logger;
    private readonly IMqttClient _client;
    private readonly List<string> _subscriptions = [];
    private readonly TaskCompletionSource _firstConnect = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public MqttServiceConnection(IOptions<CloudOptions> options, ServiceIdentity identity, IServiceProvider services, ILogger<MqttServiceConnection> logger)
    {
        _options = options.Value;
        _identity = identity;
        _services = services;
        _logger = logger;
        _client = new MqttClientFactory().CreateMqttClient();
        _client.ApplicationMessageReceivedAsync += args => MessageReceived?.Invoke(args) ?? Task.CompletedTask;
    }

    /// <summary>Messages on the subscribed filters. Set <c>AutoAcknowledge = false</c> to acknowledge later.</summary>
    public event Func<MqttApplicationMessageReceivedEventArgs, Task>? MessageReceived;

    public bool IsConnected => _client.IsConnected;

    /// <summary>Completes once the first connection is up (and subscriptions are in place).</summary>
    public Task Connected => _firstConnect.Task;

    /// <summary>Adds a subscription, made on every (re)connect; call before the host starts.</summary>
    public void Subscribe(string topicFilter) => _subscriptions.Add(topicFilter);

    public async Task PublishAsync(MqttApplicationMessage message, CancellationToken cancellationToken)
    {
        var result = await _client.PublishAsync(message, cancellationToken);
        if (!result.IsSuccess)
            throw new IOException($"Broker refused the cloud's publication to {message.Topic}: {result.ReasonCode} {result.ReasonString}");
    }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // The first connection is made before the host reports started, so that anything published by
        // hosted services started after this one has a connection to go out on.
        await ConnectAsync(cancellationToken);
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(200);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500), stoppingToken);
                if (_client.IsConnected) { delay = TimeSpan.FromMilliseconds(200); continue; }
                _logger.LogWarning("Cloud lost its MQTT connection; reconnecting");
                await ConnectAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Reconnect failed; retrying in {Delay}", delay);
                await Task.Delay(delay, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (_client.IsConnected)
        {
            try
            {
                await _client.DisconnectAsync(new MqttClientDisconnectOptionsBuilder().WithReason(MqttClientDisconnectOptionsReason.NormalDisconnection).Build(), cancellationToken);
            }
            catch (Exception e)
            {
                _logger.LogDebug(e, "Disconnect failed");
            }
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    private async Task ConnectAsync(CancellationToken cancellationToken)
    {
        var (host, port) = _options.UsesEmbeddedBroker
            ? (ListenAddresses.Parse(_options.BrokerBindAddress, "Cloud:BrokerBindAddress").LocalAddress.ToString(), ((EmbeddedBroker)_services.GetService(typeof(EmbeddedBroker))!).Port)
            : _options.ExternalBrokerEndpoint();
        var builder = new MqttClientOptionsBuilder().WithTcpServer(host, port);
        if (_options.ExternalBrokerUsesTls) builder.WithTlsOptions(PinnedTls.ClientOptions(_options.Tls.CaFile!, _options.Tls.ClientCertificateFile, _options.Tls.ClientKeyFile));
        var options = builder
            .WithClientId($"{_identity.UserName}-{_options.ClusterId}")
            .WithCredentials(_identity.UserName, _identity.Password)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500)
            .WithCleanStart(false)
            .WithSessionExpiryInterval(7 * 24 * 3600)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(15))
            .WithTimeout(TimeSpan.FromSeconds(10))
            .Build();
        var result = await _client.ConnectAsync(options, cancellationToken);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
            throw new IOException($"Broker {host}:{port} refused the cloud's login as {_identity.UserName}: {result.ResultCode} {result.ReasonString}");
        if (_subscriptions.Count > 0)
        {
            var subscribe = new MqttClientSubscribeOptionsBuilder();
            foreach (var filter in _subscriptions)
                subscribe.WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce);
            var subscribed = await _client.SubscribeAsync(subscribe.Build(), cancellationToken);
            foreach (var item in subscribed.Items)
                if (item.ResultCode > MqttClientSubscribeResultCode.GrantedQoS2)
                    throw new IOException($"Broker refused the cloud's subscription to {item.TopicFilter.Topic}: {item.ResultCode}");
        }
        _logger.LogInformation("Cloud connected to MQTT broker {Host}:{Port} as {User} (session present: {SessionPresent})", host, port, _identity.UserName, result.IsSessionPresent);
        _firstConnect.TrySetResult();
    }
}
