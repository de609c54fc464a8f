using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using MQTTnet.Adapter;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Implementations;
using MQTTnet.Server;
using MQTTnet.Server.Internal.Adapter;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// The embedded broker's plain TCP listener in place of MQTTnet's: it serves the server options' default endpoint (same
/// addresses and port) but counts connections per source address (<see cref="ConnectionLimiter"/>, refused ones closed
/// at once) and reads every connection through a <see cref="PacketSizeLimitedChannel"/>, so no packet costs memory
/// beyond the configured maximum. Any other endpoint of the options (the TLS one) is left to MQTTnet's own adapter.
/// </summary>
public sealed class BoundedTcpServerAdapter(ConnectionLimiter connections, int maxConnectPacketBytes, int maxPacketBytes,
    RejectionLog rejections, ILogger logger) : IMqttServerAdapter
{
    private readonly MqttTcpServerAdapter _others = new();
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

    public async Task StartAsync(MqttServerOptions options, IMqttNetLogger logger)
    {
        _options = options;
        _mqttLogger = logger;
        _stopping = new CancellationTokenSource();
        var endpoint = options.DefaultEndpointOptions;
        if (endpoint.IsEnabled)
        {
            if (!Equals(endpoint.BoundInterNetworkAddress, IPAddress.None)) Listen(endpoint, endpoint.BoundInterNetworkAddress);
            if (!Equals(endpoint.BoundInterNetworkV6Address, IPAddress.IPv6None) && Socket.OSSupportsIPv6) Listen(endpoint, endpoint.BoundInterNetworkV6Address);
            // MQTTnet's adapter serves whatever else is enabled, and not this endpoint a second time.
            endpoint.IsEnabled = false;
        }
        _others.ClientHandler = adapter => ClientHandler?.Invoke(adapter) ?? Task.CompletedTask;
        await _others.StartAsync(options, logger);
    }

    private void Listen(MqttServerTcpEndpointOptions endpoint, IPAddress address)
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

    private async Task AcceptAsync(Socket listener, MqttServerTcpEndpointOptions endpoint, CancellationToken stopping)
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

    private async Task ServeAsync(Socket socket, MqttServerTcpEndpointOptions endpoint)
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
            await using var stream = new NetworkStream(socket, ownsSocket: true);
            var channel = new PacketSizeLimitedChannel(new MqttTcpChannel(stream, remote, socket.LocalEndPoint!, null!), maxConnectPacketBytes, maxPacketBytes)
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

    public async Task StopAsync()
    {
        _stopping?.Cancel();
        foreach (var listener in _listeners) listener.Dispose();
        _listeners.Clear();
        await _others.StopAsync();
    }

    public void Dispose()
    {
        _stopping?.Cancel();
        foreach (var listener in _listeners) listener.Dispose();
        _listeners.Clear();
        _others.Dispose();
        _stopping?.Dispose();
    }
}
