namespace FedEdge.Cloud.Tests;

/// <summary>Registered devices whose credentials outlive a cloud, so they reconnect after a restart (ids dev-0 … dev-n−1).</summary>
public sealed class TestFleet(string federation, int count) : IAsyncDisposable
{
    private readonly List<(string Id, string Password, byte[] Key)> _credentials = [];
    private readonly List<TestDevice> _connected = [];

    public IReadOnlyList<TestDevice> Devices => _connected;

    /// <summary>Registers the devices on the first call, then (re)connects them all to <paramref name="cloud"/>.</summary>
    public async Task ConnectAsync(CloudTestHost cloud)
    {
        await DisconnectAsync();
        if (_credentials.Count == 0)
        {
            for (var i = 0; i < count; i++)
            {
                var (_, password, key) = cloud.Registry.Add($"dev-{i}", federation);
                _credentials.Add(($"dev-{i}", password, key));
            }
        }
        foreach (var (id, password, key) in _credentials) _connected.Add(await TestDevice.ConnectAsync(cloud, id, federation, password, key));
    }

    private async Task DisconnectAsync()
    {
        foreach (var device in _connected) await device.DisposeAsync();
        _connected.Clear();
    }

    public ValueTask DisposeAsync() => new(DisconnectAsync());
}
