namespace FedEdge.Edge.Tests.Brokers;

/// <summary>A broker a test starts and stops itself, on a loopback port from TestPorts.</summary>
public interface ITestBroker : IAsyncDisposable
{
    Uri Address { get; }
    Task StartAsync();
    Task StopAsync();

    /// <summary>Adds a user the broker accepts (call before <see cref="StartAsync"/>).</summary>
    void AddUser(string userName, string password);
}
