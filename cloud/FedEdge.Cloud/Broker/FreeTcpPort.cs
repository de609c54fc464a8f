using System.Net;
using System.Net.Sockets;

namespace FedEdge.Cloud.Broker;

/// <summary>Finds a free loopback TCP port (for tests and "port 0" options).</summary>
public static class FreeTcpPort
{
    public static int Find()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
