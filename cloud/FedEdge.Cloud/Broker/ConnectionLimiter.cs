using System.Collections.Concurrent;
using System.Net;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// Open connections per source address, bounded (<see cref="CloudOptions.MaxConnectionsPerAddress"/>): one address cannot
/// hold the broker's sockets and per-connection buffers for everyone. Thread-safe.
/// </summary>
public sealed class ConnectionLimiter(int maxPerAddress)
{
    private readonly ConcurrentDictionary<IPAddress, int> _open = new();

    /// <summary>Counts a new connection from <paramref name="address"/>; false (nothing counted) when it already has the most.</summary>
    public bool TryOpen(IPAddress address)
    {
        address = Normalize(address);
        while (true)
        {
            var current = _open.GetOrAdd(address, 0);
            if (current >= maxPerAddress) return false;
            if (_open.TryUpdate(address, current + 1, current)) return true;
        }
    }

    /// <summary>Releases a connection counted by <see cref="TryOpen"/>.</summary>
    public void Close(IPAddress address)
    {
        address = Normalize(address);
        while (_open.TryGetValue(address, out var current))
        {
            if (current <= 1 ? _open.TryRemove(new KeyValuePair<IPAddress, int>(address, current)) : _open.TryUpdate(address, current - 1, current))
                return;
        }
    }

    public int OpenFrom(IPAddress address) => _open.TryGetValue(Normalize(address), out var n) ? n : 0;

    /// <summary>An IPv4 client on a dual-stack socket counts as its IPv4 address.</summary>
    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
}
