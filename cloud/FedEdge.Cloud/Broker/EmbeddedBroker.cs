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
        var server = new MqttServerFactory().CreateMqttServer(serverOptions);
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

    private Task ValidateConnectionAsync(ValidatingConnectionEventArgs args)
    {
        if (string.Equals(args.UserName, _service.UserName, StringComparison.Ordinal))
        {
            if (args.Password is not null && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                    System.Text.Encoding.UTF8.GetBytes(args.Password), System.Text.Encoding.UTF8.GetBytes(_service.Password)))
            {
                args.SessionItems[ServiceKey] = true;
                args.ReasonCode = MqttConnectReasonCode.Success;
                return Task.CompletedTask;
            }
            return Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, "bad service password");
        }

        if (args.ClientCertificate is { } certificate && _deviceCertificates is not null)
            return ValidateDeviceCertificate(args, certificate);
        var device = _registry.Authenticate(args.UserName, args.Password, out var failure);
        if (device is null)
            return Refuse(args, failure == "device revoked" ? MqttConnectReasonCode.Banned : MqttConnectReasonCode.BadUserNameOrPassword, failure!);
        // Persistent sessions are keyed by client id: a device using another's client id would take over its session.
        if (!string.Equals(args.ClientId, device.DeviceId, StringComparison.Ordinal))
            return Refuse(args, MqttConnectReasonCode.ClientIdentifierNotValid, $"client id '{args.ClientId}' is not the device id");
        args.SessionItems[DeviceKey] = device;
        args.ReasonCode = MqttConnectReasonCode.Success;
        return Task.CompletedTask;
    }

    /// <summary>
    /// Mutual TLS: the certificate (already checked against the device CA by the TLS handshake) names the device; the
    /// client id, and the user name if any, must be that device, which must be registered and not revoked.
    /// </summary>
    private Task ValidateDeviceCertificate(ValidatingConnectionEventArgs args, System.Security.Cryptography.X509Certificates.X509Certificate2 certificate)
    {
        var deviceId = BrokerTlsEndpoint.DeviceId(certificate);
        if (!string.IsNullOrEmpty(args.UserName) && !string.Equals(args.UserName, deviceId, StringComparison.Ordinal))
            return Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, $"user name '{args.UserName}' is not the device '{deviceId}' of the client certificate");
        var device = _registry.Find(deviceId);
        if (device is null) return Refuse(args, MqttConnectReasonCode.BadUserNameOrPassword, $"client certificate for unknown device '{deviceId}'");
        if (device.Revoked) return Refuse(args, MqttConnectReasonCode.Banned, "device revoked");
        if (!string.Equals(args.ClientId, device.DeviceId, StringComparison.Ordinal))
            return Refuse(args, MqttConnectReasonCode.ClientIdentifierNotValid, $"client id '{args.ClientId}' is not the device id of the client certificate");
        args.SessionItems[DeviceKey] = device;
        args.ReasonCode = MqttConnectReasonCode.Success;
        return Task.CompletedTask;
    }

    private Task Refuse(ValidatingConnectionEventArgs args, MqttConnectReasonCode code, string why)
    {
        Interlocked.Increment(ref _refusedConnections);
        args.ReasonCode = code;
        _logger.LogWarning("Broker refused connection of client {ClientId} user {UserName} from {Endpoint}: {Reason}", args.ClientId, args.UserName, args.RemoteEndPoint, why);
        return Task.CompletedTask;
    }

    /// <remarks>Last wills pass through here too when the broker dispatches them, so a forged will is dropped.</remarks>
    private Task InterceptPublishAsync(InterceptingPublishEventArgs args)
    {
        if (args.SessionItems is null) return Task.CompletedTask;
        // Whatever is published on an update topic, by a device or by a service client relaying one, is ingested
        // (and checked: registry, signature, device) before the PUBACK.
        if (args.SessionItems.Contains(ServiceKey)
            || (args.SessionItems[DeviceKey] is DeviceRecord device && TopicAccessPolicy.MayPublish(device, args.ApplicationMessage.Topic)))
            return IsUpdate(args.ApplicationMessage.Topic) ? IngestAsync(args) : Task.CompletedTask;
        Interlocked.Increment(ref _refusedPublications);
        args.ProcessPublish = false;
        args.Response.ReasonCode = MqttPubAckReasonCode.NotAuthorized;
        _logger.LogWarning("Broker refused publication by {ClientId} to {Topic}", args.ClientId, args.ApplicationMessage.Topic);
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
