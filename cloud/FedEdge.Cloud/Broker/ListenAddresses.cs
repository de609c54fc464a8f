using System.Net;
using System.Net.Sockets;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// The addresses one broker listener binds: at most one IPv4 and one IPv6 address, each family only when named.
/// MQTTnet binds both families unless told <see cref="IPAddress.None"/>, so "127.0.0.1" alone also listened on [::].
/// </summary>
public sealed record ListenAddresses(IPAddress? V4, IPAddress? V6)
{
    /// <summary>Parses "127.0.0.1", "::1", "0.0.0.0,::" and the like (what <c>--bind</c> takes).</summary>
    public static ListenAddresses Parse(string text, string setting)
    {
        IPAddress? v4 = null, v6 = null;
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!IPAddress.TryParse(part, out var address))
                throw new ArgumentException($"{setting}: '{part}' is not an IP address (use e.g. 127.0.0.1, 0.0.0.0, ::1 or '0.0.0.0,::')");
            if (address.AddressFamily == AddressFamily.InterNetwork)
                v4 = v4 is null ? address : throw new ArgumentException($"{setting}: more than one IPv4 address in '{text}'");
            else
                v6 = v6 is null ? address : throw new ArgumentException($"{setting}: more than one IPv6 address in '{text}'");
        }
        if (v4 is null && v6 is null) throw new ArgumentException($"{setting}: no address given");
        return new ListenAddresses(v4, v6);
    }

    /// <summary>True when every bound address is a loopback address (no other machine can connect).</summary>
    public bool LoopbackOnly => (V4 is null || IPAddress.IsLoopback(V4)) && (V6 is null || IPAddress.IsLoopback(V6));

    /// <summary>Where a client on this machine reaches the listener.</summary>
    public IPAddress LocalAddress => V4 is not null
        ? (V4.Equals(IPAddress.Any) ? IPAddress.Loopback : V4)
        : (V6!.Equals(IPAddress.IPv6Any) ? IPAddress.IPv6Loopback : V6);

    public override string ToString() => string.Join(",", new[] { V4, V6 }.Where(a => a is not null));
}
