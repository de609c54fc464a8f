using System.Net;
using System.Net.Sockets;

namespace FedEdge.Edge.Tests.Brokers;

/// <summary>A broker a test starts and stops itself, on a free loopback port.</summary>
public interface ITestBroker : IAsyncDisposable
{
    Uri Address { get; }
    Task StartAsync();
    Task StopAsync();

    /// <summary>Adds a user the broker accepts (call before <see cref="StartAsync"/>).</summary>
    void AddUser(string userName, string password);
}

internal static class FreePort
{
    public static int Next()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
