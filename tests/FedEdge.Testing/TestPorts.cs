using System.Net;
using System.Net.Sockets;

namespace FedEdge.Testing;

/// <summary>
/// The one place tests get TCP ports for the servers they start. Ports come from [20000, 32000), below the kernel's
/// ephemeral range (32768–60999 by default): a port taken from the ephemeral range with a port-0 probe can be handed to
/// another process's outgoing connection before the server binds it (seen in CI as a broker refusing the cloud's login
/// because another test's broker had the port). Within a process no port is handed out twice; across the test
/// processes that `dotnet test` runs in parallel, the random draw and the bind check make a clash unlikely, and the
/// launchers confirm from the server's own log that it is the one listening.
/// </summary>
public static class TestPorts
{
    private const int First = 20_000;
    private const int End = 32_000;
    private static readonly HashSet<int> Handed = [];

    /// <summary>A loopback port nobody listens on now and that this process has not handed out before.</summary>
    public static int Reserve()
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var port = Random.Shared.Next(First, End);
            lock (Handed)
            {
                if (Handed.Contains(port) || !IsFree(port)) continue;
                Handed.Add(port);
                return port;
            }
        }
        throw new InvalidOperationException($"no free loopback port in [{First}, {End})");
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
