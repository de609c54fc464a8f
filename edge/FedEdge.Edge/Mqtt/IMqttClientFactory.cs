using MQTTnet;

namespace FedEdge.Edge.Mqtt;

/// <summary>
/// Makes the MQTTnet clients the agent talks through. The seam lets a simulator host many agents in one
/// process (sharing a logger, or wrapping clients to count bytes or inject faults).
/// </summary>
public interface IMqttClientFactory
{
    IMqttClient CreateClient();
}

/// <summary>Plain MQTTnet TCP clients.</summary>
public sealed class MqttNetClientFactory : IMqttClientFactory
{
    private readonly MqttClientFactory _factory = new();

    public IMqttClient CreateClient() => _factory.CreateMqttClient();
}
