using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Implementations;
using MQTTnet.Server;
using MQTTnet.Server.Internal.Adapter;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// The embedded broker's TCP listeners in place of MQTTnet's: it serves the server options' default (plain) endpoint and
/// its TLS endpoint (same addresses, ports, certificate and client-certificate check) but counts connections per source
/// address (<see cref="ConnectionLimiter"/>, refused ones closed at once, before any TLS handshake) and reads every
/// connection through a <see cref="PacketSizeLimitedChannel"/>, so no packet costs memory beyond the configured maximum.
/// The internet-facing listener is the TLS one: it must be bounded as the plain one is.
/// </summary>
public sealed class BoundedTcpServerAdapter(ConnectionLimiter connections, int maxConnectPacketBytes, int maxPacketBytes,
    RejectionLog rejections, ILogger logger) : IMqttServerAdapter
{
    private readonly List<Socket> _listeners = [];
    private CancellationTokenSource? _stopping;
    private IMqttNetLogger _mqttLogger = MqttNetNullLogger.Instance;
    private MqttServerOptions? _options;

    public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

    /// <summary>Connections refused (per address or packet size); for tests and the status API.</summary>
    public long RefusedConnections => Interlocked.Read(ref _refusedConnections);
    public long OversizedPackets => Interlocked.Read(ref _oversizedPackets);
    private long _refusedConnections;
    private long _oversizedPackets;

    public Task StartAsync(MqttServerOptions options, IMqttNetLogger logger)
    {
        _options = options;
        _mqttLogger = logger;
        _stopping = new CancellationTokenSource();
        foreach (MqttServerTcpEndpointBaseOptions endpoint in new MqttServerTcpEndpointBaseOptions[] { options.DefaultEndpointOptions, options.TlsEndpointOptions })
        {
            if (!endpoint.IsEnabled) continue;
            if (!IsNone(endpoint.BoundInterNetworkAddress)) Listen(endpoint, endpoint.BoundInterNetworkAddress);
            if (!IsNone(endpoint.BoundInterNetworkV6Address) && Socket.OSSupportsIPv6) Listen(endpoint, endpoint.BoundInterNetworkV6Address);
        }
        return Task.CompletedTask;
    }

    private static bool IsNone(IPAddress address) => Equals(address, IPAddress.None) || Equals(address, IPAddress.IPv6None);

    /// <summary>A TLS handshake longer than this is abandoned: a client that opens and stalls holds no slot for long.</summary>
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private void Listen(MqttServerTcpEndpointBaseOptions endpoint, IPAddress address)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (address.AddressFamily == AddressFamily.InterNetworkV6) socket.DualMode = false; // the v4 address has its own socket
            if (endpoint.ReuseAddress) socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.NoDelay = endpoint.NoDelay;
            socket.Bind(new IPEndPoint(address, endpoint.Port));
            socket.Listen(endpoint.ConnectionBacklog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        _listeners.Add(socket);
        _ = AcceptAsync(socket, endpoint, _stopping!.Token);
    }

    private async Task AcceptAsync(Socket listener, MqttServerTcpEndpointBaseOptions endpoint, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(stopping);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                logger.LogDebug(e, "Accepting an MQTT connection failed");
                continue;
            }
            _ = ServeAsync(client, endpoint);
        }
    }

    private async Task ServeAsync(Socket socket, MqttServerTcpEndpointBaseOptions endpoint)
    {
        var remote = (IPEndPoint)socket.RemoteEndPoint!;
        if (!connections.TryOpen(remote.Address))
        {
            Interlocked.Increment(ref _refusedConnections);
            rejections.Record(remote.Address.ToString(), "TooManyConnections", $"over {connections.OpenFrom(remote.Address)} open connections");
            socket.Dispose();
            return;
        }
        try
        {
            socket.NoDelay = endpoint.NoDelay;
            if (endpoint.LingerState is { } linger) socket.LingerState = linger;
            Stream stream = new NetworkStream(socket, ownsSocket: true);
            X509Certificate2? clientCertificate = null;
            if (endpoint is MqttServerTlsTcpEndpointOptions tls)
            {
                (stream, clientCertificate) = await AuthenticateAsync(stream, tls, _stopping!.Token);
            }
            await using var owned = stream;
            var channel = new PacketSizeLimitedChannel(new MqttTcpChannel(stream, remote, socket.LocalEndPoint!, clientCertificate!), maxConnectPacketBytes, maxPacketBytes)
            {
                Refused = e =>
                {
                    Interlocked.Increment(ref _oversizedPackets);
                    rejections.Record(remote.Address.ToString(), "PacketTooLarge", e.Message);
                },
            };
            var formatter = new MqttPacketFormatterAdapter(new MqttBufferWriter(_options!.WriterBufferSize, _options.WriterBufferSizeMax));
            using var adapter = new MqttChannelAdapter(channel, formatter, _mqttLogger) { AllowPacketFragmentation = endpoint.AllowPacketFragmentation };
            await (ClientHandler?.Invoke(adapter) ?? Task.CompletedTask);
        }
        catch (Exception e)
        {
            logger.LogDebug(e, "MQTT connection from {Endpoint} ended", remote);
        }
        finally
        {
            connections.Close(remote.Address);
            socket.Dispose();
        }
    }

    /// <summary>The server side of the TLS handshake with the endpoint's certificate, protocols and client-certificate check.</summary>
    private static async Task<(Stream Stream, X509Certificate2? ClientCertificate)> AuthenticateAsync(Stream network, MqttServerTlsTcpEndpointOptions tls, CancellationToken stopping)
    {
        var ssl = new SslStream(network, leaveInnerStreamOpen: false, tls.RemoteCertificateValidationCallback);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            timeout.CancelAfter(HandshakeTimeout);
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificate = tls.CertificateProvider.GetCertificate(),
                ClientCertificateRequired = tls.ClientCertificateRequired,
                EnabledSslProtocols = tls.SslProtocol,
                CertificateRevocationCheckMode = tls.CheckCertificateRevocation ? X509RevocationMode.Online : X509RevocationMode.NoCheck,
            }, timeout.Token);
            var presented = ssl.RemoteCertificate is null ? null
                : ssl.RemoteCertificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(ssl.RemoteCertificate.GetRawCertData());
            return (ssl, presented);
        }
        catch
        {
            await ssl.DisposeAsync();
            throw;
        }
    }

    public Task StopAsync()
    {
        _stopping?.Cancel();
        foreach (var listener in _listeners) listener.Dispose();
        _listeners.Clear();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _stopping?.Cancel();
        foreach (var listener in _listeners) listener.Dispose();
        _listeners.Clear();
        _stopping?.Dispose();
    }
}
