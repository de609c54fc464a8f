using System.Net;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// The MQTT broker co-hosted with the cloud by default (MQTTnet.Server). Access control runs in MQTTnet's
/// events: a client logs in as the cloud's service identity or as a registered, non-revoked device
/// (user name = client id = device id, password checked against the registry's hash); a device may
/// publish and subscribe only as <see cref="TopicAccessPolicy"/> allows. Refusals are logged.
/// A device's update is ingested (verified and persisted by the cloud) inside the publish interceptor, before the
/// broker sends the PUBACK: the agent deletes an update from its outbox on the PUBACK, and this broker's queues and
/// sessions live in the cloud's process, so an update acknowledged but not yet ingested would be lost if the process
/// stopped. An update the cloud could not process gets a non-permanent error reason, and the agent sends it again.
/// </summary>
public sealed class EmbeddedBroker : IHostedService, IAsyncDisposable
{
    private const string DeviceKey = "fededge.device";
    private const string ServiceKey = "fededge.service";

    private readonly CloudOptions _options;
    private readonly DeviceRegistry _registry;
    private readonly ServiceIdentity _service;
    private readonly ILogger<EmbeddedBroker> _logger;
    private readonly IServiceProvider _services;
    private IBrokerUpdateIngress? _ingress;
    private MqttServer? _server;
    private Timer? _revocationSweep;
    private FedEdge.Protocol.Tls.PinnedChainValidator? _deviceCertificates;
    private BoundedTcpServerAdapter? _listener;

    /// <summary>Refusals of this broker (connections, logins, publications), logged as one line per interval.</summary>
    public RejectionLog Rejections => _rejections ??= _services.GetRequiredService<RejectionLog>();
    private RejectionLog? _rejections;

    /// <summary>Connections closed for announcing a packet above the limit, and connections refused per source address.</summary>
    public long OversizedPackets => _listener?.OversizedPackets ?? 0;
    public long RefusedByAddress => _listener?.RefusedConnections ?? 0;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _connectedDevices = new(StringComparer.Ordinal);

    public EmbeddedBroker(IOptions<CloudOptions> options, DeviceRegistry registry, ServiceIdentity service, ILogger<EmbeddedBroker> logger,
        IServiceProvider services)
    {
        _services = services;
        _options = options.Value;
        _registry = registry;
        _service = service;
        _logger = logger;
    }

    /// <summary>The port the broker listens on (resolved when <see cref="CloudOptions.BrokerPort"/> was 0).</summary>
    public int Port { get; private set; }

    /// <summary>The TLS listener's port (0 when it is off; resolved when <see cref="BrokerTlsOptions.Port"/> was 0).</summary>
    public int TlsPort { get; private set; }

    /// <summary>Number of connections, publications and subscriptions refused, for the status API and tests.</summary>
    public long RefusedConnections => Interlocked.Read(ref _refusedConnections);
    public long RefusedPublications => Interlocked.Read(ref _refusedPublications);
    public long RefusedSubscriptions => Interlocked.Read(ref _refusedSubscriptions);

    private long _refusedConnections;
    private long _refusedPublications;
    private long _refusedSubscriptions;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        Port = _options.BrokerPort == 0 ? FreeTcpPort.Find() : _options.BrokerPort;
        var serverOptions = new MqttServerOptionsBuilder()
            .WithPersistentSessions()
            // MQTTnet drops a client's oldest queued messages beyond this (default 250): a burst of updates queued
            // for the cloud's own subscription must wait, not vanish.
            .WithMaxPendingMessagesPerClient(100_000)
            .Build();
        var plain = ListenAddresses.Parse(_options.BrokerBindAddress, "Cloud:BrokerBindAddress");
        BrokerTlsEndpoint.BindPlain(serverOptions, plain, Port);
        if (_options.Tls.ListenerEnabled)
        {
            TlsPort = _options.Tls.Port == 0 ? FreeTcpPort.Find() : _options.Tls.Port;
            _deviceCertificates = BrokerTlsEndpoint.EnableTls(serverOptions, _options.Tls, TlsPort);
        }
        // MQTTnet.Server has no maximum packet size: our listener bounds packets before they are read (and connections per address).
        _listener = new BoundedTcpServerAdapter(new ConnectionLimiter(_options.MaxConnectionsPerAddress), _options.MaxConnectPacketBytes,
            _options.MaxMqttPacketBytes, Rejections, _logger);
        var server = new MqttServerFactory().CreateMqttServer(serverOptions, [_listener]);
        server.ValidatingConnectionAsync += ValidateConnectionAsync;
        server.InterceptingPublishAsync += InterceptPublishAsync;
        server.InterceptingSubscriptionAsync += InterceptSubscriptionAsync;
        server.ClientConnectedAsync += args =>
        {
            if (args.SessionItems[DeviceKey] is DeviceRecord device) _connectedDevices[args.ClientId] = device.DeviceId;
            return Task.CompletedTask;
        };
        server.ClientDisconnectedAsync += args =>
        {
            _connectedDevices.TryRemove(args.ClientId, out _);
            return Task.CompletedTask;
        };
        await server.StartAsync();
        _server = server;
        _revocationSweep = new Timer(_ => _ = DisconnectRevokedAsync(), null, RevocationSweepPeriod, RevocationSweepPeriod);
        _logger.LogInformation("Embedded MQTT broker listening on {Address}:{Port}", plain, Port);
        if (_options.Tls.ListenerEnabled)
            _logger.LogInformation("Embedded MQTT broker listening with TLS on {Address}:{Port} (device certificates: {DeviceCertificates})", _options.Tls.BindAddress, TlsPort,
                _deviceCertificates is null ? "off" : _options.Tls.RequireClientCertificate ? "required" : "accepted");
    }

    /// <summary>How often connected devices are checked against the registry for revocation.</summary>
    public static readonly TimeSpan RevocationSweepPeriod = TimeSpan.FromSeconds(5);

    /// <summary>Disconnects devices revoked (by `fededge devices revoke`, possibly another process) while connected.</summary>
    public async Task DisconnectRevokedAsync()
    {
        if (_server is not { IsStarted: true } server) return;
        foreach (var (clientId, deviceId) in _connectedDevices)
        {
            try
            {
                if (_registry.Find(deviceId) is { Revoked: false }) continue;
                _logger.LogWarning("Disconnecting {Device}: revoked or removed from the registry", deviceId);
                await server.DisconnectClientAsync(clientId, new MqttServerClientDisconnectOptions { ReasonCode = MqttDisconnectReasonCode.NotAuthorized });
                _connectedDevices.TryRemove(clientId, out _);
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Revocation check of {Device} failed", deviceId);
            }
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_revocationSweep is not null) await _revocationSweep.DisposeAsync();
        if (_server is { IsStarted: true } server)
        {
            await server.StopAsync(new MqttServerStopOptions());
            _logger.LogInformation("Embedded MQTT broker stopped");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_revocationSweep is not null) await _revocationSweep.DisposeAsync();
        if (_server is not null)
        {
            if (_server.IsStarted) await _server.StopAsync(new MqttServerStopOptions());
            _server.Dispose();
            _server = null;
        }
    }

    private LoginThrottle Logins => _logins ??= _services.GetRequiredService<LoginThrottle>();
    private LoginThrottle? _logins;

    private async Task ValidateConnectionAsync(ValidatingConnectionEventArgs args)
    {
        var address = (args.RemoteEndPoint as IPEndPoint)?.Address;
        // The service's password is a random 192-bit secret compared in constant time (no hashing): checked before the
        // throttle, so that nobody can lock the cloud out of its own broker by failing logins under its name.
        if (string.Equals(args.UserName, _service.UserName, StringComparison.Ordinal))
        {
            if (args.Password is not null && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                    System.Text.Encoding.UTF8.GetBytes(args.Password), System.Text.Encoding.UTF8.GetBytes(_service.Password)))
            {
                args.SessionItems[ServiceKey] = true;
                args.ReasonCode = MqttConnectReasonCode.Success;
                return;
            }
            Logins.Failed(null, address);
            Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, "bad service password");
            return;
        }
        if (Logins.Refusal(args.UserName, address) is { } throttled)
        {
            Refuse(args, MqttConnectReasonCode.ConnectionRateExceeded, throttled);
            return;
        }

        if (args.ClientCertificate is { } certificate && _deviceCertificates is not null)
        {
            ValidateDeviceCertificate(args, certificate);
            return;
        }
        string? failure = null;
        var (device, ran) = await Logins.HashAsync(() => _registry.Authenticate(args.UserName, args.Password, out failure), args.CancellationToken);
        if (!ran)
        {
            Refuse(args, MqttConnectReasonCode.ServerBusy, "too many logins being checked");
            return;
        }
        if (device is null)
        {
            Logins.Failed(args.UserName, address);
            Refuse(args, failure == "device revoked" ? MqttConnectReasonCode.Banned : MqttConnectReasonCode.BadUserNameOrPassword, failure!);
            return;
        }
        // Persistent sessions are keyed by client id: a device using another's client id would take over its session.
        if (!string.Equals(args.ClientId, device.DeviceId, StringComparison.Ordinal))
        {
            Refuse(args, MqttConnectReasonCode.ClientIdentifierNotValid, $"client id '{args.ClientId}' is not the device id");
            return;
        }
        args.SessionItems[DeviceKey] = device;
        args.ReasonCode = MqttConnectReasonCode.Success;
    }

    /// <summary>
    /// Mutual TLS: the certificate (already checked against the device CA by the TLS handshake) names the device; the
    /// client id, and the user name if any, must be that device, which must be registered and not revoked.
    /// </summary>
    private void ValidateDeviceCertificate(ValidatingConnectionEventArgs args, System.Security.Cryptography.X509Certificates.X509Certificate2 certificate)
    {
        var deviceId = BrokerTlsEndpoint.DeviceId(certificate);
        if (!string.IsNullOrEmpty(args.UserName) && !string.Equals(args.UserName, deviceId, StringComparison.Ordinal))
        {
            Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, $"user name '{args.UserName}' is not the device '{deviceId}' of the client certificate");
            return;
        }
        var device = _registry.Find(deviceId);
        if (device is null || device.Revoked)
        {
            Refuse(args, device is null ? MqttConnectReasonCode.BadUserNameOrPassword : MqttConnectReasonCode.Banned,
                device is null ? $"client certificate for unknown device '{deviceId}'" : "device revoked");
            return;
        }
        if (!string.Equals(args.ClientId, device.DeviceId, StringComparison.Ordinal))
        {
            Refuse(args, MqttConnectReasonCode.ClientIdentifierNotValid, $"client id '{args.ClientId}' is not the device id of the client certificate");
            return;
        }
        args.SessionItems[DeviceKey] = device;
        args.ReasonCode = MqttConnectReasonCode.Success;
    }

    private void Refuse(ValidatingConnectionEventArgs args, MqttConnectReasonCode code, string why)
    {
        Interlocked.Increment(ref _refusedConnections);
        args.ReasonCode = code;
        // Counted per source address and reason, one log line per interval: a password-guessing client cannot flood the log.
        Rejections.Record(args.RemoteEndPoint is IPEndPoint ip ? ip.Address.ToString() : "?", code.ToString(), $"user {RejectionLog.Printable(args.UserName)}: {why}");
    }

    /// <remarks>Last wills pass through here too when the broker dispatches them, so a forged will is dropped.</remarks>
    private Task InterceptPublishAsync(InterceptingPublishEventArgs args)
    {
        if (args.SessionItems is null) return Task.CompletedTask;
        // Whatever is published on an update topic, by a device or by a service client relaying one, is ingested
        // (and checked: registry, signature, device) before the PUBACK.
        var message = args.ApplicationMessage;
        var device = args.SessionItems[DeviceKey] as DeviceRecord;
        if (!args.SessionItems.Contains(ServiceKey) && (device is null || !TopicAccessPolicy.MayPublish(device, message.Topic)))
            return RefusePublication(args, "topic not allowed");
        if (device is not null && RetainPolicy.Refusal(device, message.Topic, message.Retain, message.Payload.Length) is { } notRetained)
            return RefusePublication(args, notRetained);
        return IsUpdate(message.Topic) ? IngestAsync(args) : Task.CompletedTask;
    }

    private Task RefusePublication(InterceptingPublishEventArgs args, string why)
    {
        Interlocked.Increment(ref _refusedPublications);
        args.ProcessPublish = false;
        args.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
        args.Response.ReasonString = why;
        Rejections.Record(args.ClientId, "PublicationRefused", $"{why}: {args.ApplicationMessage.Topic}");
        return Task.CompletedTask;
    }

    private static bool IsUpdate(string topic) => topic.Split('/') is [MqttTopics.Root, _, "update", _];

    private async Task IngestAsync(InterceptingPublishEventArgs args)
    {
        _ingress ??= _services.GetService<IBrokerUpdateIngress>();
        if (_ingress is null) return; // no cloud ingestion in this host: route it like any message
        try
        {
            var outcome = await _ingress.IngestAsync(args.ApplicationMessage, args.CancellationToken);
            if (!outcome.IsTaken)
            {
                // Retryable: the agent keeps the update in its outbox and sends all of it again after a back-off.
                args.ProcessPublish = false;
                args.Response.ReasonCode = outcome.Code;
                args.Response.ReasonString = outcome.Reason;
            }
        }
        catch (Exception e)
        {
            // Not taken: the device keeps the update in its outbox and sends it again (a non-permanent reason).
            args.ProcessPublish = false;
            args.Response.ReasonCode = MqttPubAckReasonCode.ImplementationSpecificError;
            args.Response.ReasonString = "the cloud could not process the update now; send it again";
            _logger.LogWarning(e, "Update from {ClientId} on {Topic} not ingested; refused for redelivery", args.ClientId, args.ApplicationMessage.Topic);
        }
    }

    private Task InterceptSubscriptionAsync(InterceptingSubscriptionEventArgs args)
    {
        if (args.SessionItems.Contains(ServiceKey)) return Task.CompletedTask;
        if (args.SessionItems[DeviceKey] is DeviceRecord device && TopicAccessPolicy.MaySubscribe(device, args.TopicFilter.Topic))
            return Task.CompletedTask;
        Interlocked.Increment(ref _refusedSubscriptions);
        args.ProcessSubscription = false;
        args.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
        _logger.LogWarning("Broker refused subscription by {ClientId} to {Filter}", args.ClientId, args.TopicFilter.Topic);
        return Task.CompletedTask;
    }
}
