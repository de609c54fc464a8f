using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Tests.Brokers;

namespace FedEdge.Edge.Tests.Agent;

/// <summary>
/// Fixture of the whole-agent tests: an embedded broker that knows the device and a "cloud" user, and the MQTT link
/// through which the test plays the cloud (publishes models and assignments, reads updates).
/// </summary>
public abstract class AgentOverBrokerTest : IAsyncLifetime
{
    private MqttLink? _cloud;

    protected TestFederation Federation { get; } = new();

    protected EmbeddedBroker Broker { get; } = new();

    protected TempDirectory Dir { get; } = new();

    protected MqttLink Cloud => _cloud ?? throw new InvalidOperationException("The fixture is not initialised.");

    public async Task InitializeAsync()
    {
        Broker.AddUser(Federation.DeviceId, "device-secret");
        Broker.AddUser("cloud", "cloud-secret");
        await Broker.StartAsync();
        _cloud = new MqttLink(new MqttLinkOptions { Broker = Broker.Address, ClientId = "cloud", UserName = "cloud", Password = "cloud-secret" });
        await _cloud.StartAsync();
        await _cloud.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    public async Task DisposeAsync()
    {
        if (_cloud is not null) await _cloud.DisposeAsync();
        await Broker.DisposeAsync();
        Federation.Dispose();
        Dir.Dispose();
    }
}
