using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace FedEdge.Edge.Tests.Brokers;

/// <summary>
/// MQTTnet's broker in the test process. Keeps a record of every publish it accepted and every CONNECT
/// packet across restarts (a restart is a new server instance on the same port, without the old sessions).
/// </summary>
public sealed class EmbeddedBroker : ITestBroker
{
    private readonly int _port = TestPorts.Reserve();
    private readonly Dictionary<string, string> _users = new(StringComparer.Ordinal);
    private MqttServer? _server;

    public Uri Address => new($"mqtt://127.0.0.1:{_port}");

    public ConcurrentQueue<(string ClientId, string Topic, byte[] Payload, bool Retain)> Published { get; } = new();
    public ConcurrentQueue<ConnectRecord> Connects { get; } = new();

    public sealed record ConnectRecord(string ClientId, string? UserName, bool? CleanSession, uint SessionExpiryInterval, MQTTnet.Formatter.MqttProtocolVersion ProtocolVersion);
    public MqttServer Server => _server ?? throw new InvalidOperationException("Broker is not running.");

    public void AddUser(string userName, string password) => _users[userName] = password;

    public async Task StartAsync()
    {
        var options = new MqttServerOptionsBuilder()
            .WithDefaultEndpoint()
            .WithDefaultEndpointBoundIPAddress(IPAddress.Loopback)
            .WithDefaultEndpointPort(_port)
            .WithDefaultEndpointReuseAddress()
            .WithPersistentSessions()
            .Build();
        var server = new MqttServerFactory().CreateMqttServer(options);
        server.ValidatingConnectionAsync += e =>
        {
            Connects.Enqueue(new ConnectRecord(e.ClientId, e.UserName, e.CleanSession, e.SessionExpiryInterval, e.ProtocolVersion));
            if (_users.Count > 0 && (!_users.TryGetValue(e.UserName ?? "", out var password) || password != e.Password))
                e.ReasonCode = MqttConnectReasonCode.BadUserNameOrPassword;
            return Task.CompletedTask;
        };
        server.InterceptingPublishAsync += e =>
        {
            Published.Enqueue((e.ClientId, e.ApplicationMessage.Topic, e.ApplicationMessage.Payload.ToArray(), e.ApplicationMessage.Retain));
            return Task.CompletedTask;
        };
        await server.StartAsync();
        _server = server;
    }

    public async Task StopAsync()
    {
        if (_server is null)
            return;
        await _server.StopAsync(new MqttServerStopOptions());
        _server.Dispose();
        _server = null;
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
