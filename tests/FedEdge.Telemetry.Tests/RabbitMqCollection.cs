namespace FedEdge.Telemetry.Tests;

/// <summary>The tests that share one RabbitMQ node (the Event Hubs stand-in).</summary>
[CollectionDefinition(Name)]
public sealed class RabbitMqCollection : ICollectionFixture<RabbitMqBroker>
{
    public const string Name = "rabbitmq";
}
