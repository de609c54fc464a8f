namespace FedEdge.Edge.Tests.Brokers;

/// <summary>
/// Mosquitto as an <see cref="ITestBroker"/>: a loopback listener, the users added before start, and on-disk persistence
/// so that sessions and queued QoS 1 messages survive a stop and start (the launcher is FedEdge.Testing's).
/// </summary>
public sealed class MosquittoBroker : ITestBroker
{
    private readonly TempDirectory _dir = new();
    private readonly List<(string User, string Password)> _users = [];
    private readonly int _port = TestPorts.Reserve();
    private MosquittoServer? _server;

    public Uri Address => new($"mqtt://127.0.0.1:{_port}");

    public void AddUser(string userName, string password) => _users.Add((userName, password));

    public async Task StartAsync()
    {
        if (_server is not null)
        {
            await _server.RestartAsync();
            return;
        }
        _server = await MosquittoServer.StartAsync(new MosquittoOptions { Directory = _dir.Path, Port = _port, Users = _users, Persistence = true });
    }

    public async Task StopAsync()
    {
        if (_server is not null) await _server.StopAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
        _dir.Dispose();
    }
}
