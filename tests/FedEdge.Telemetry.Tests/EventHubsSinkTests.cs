using System.Text;
using System.Text.Json;
using Amqp;
using Amqp.Framing;
using Amqp.Types;
using FedEdge.Cloud.Telemetry.EventHubs;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using AmqpData = Amqp.Framing.Data;

namespace FedEdge.Telemetry.Tests;

[Collection(RabbitMqCollection.Name)]
public sealed class EventHubsSinkTests(RabbitMqBroker broker)
{
    [Fact]
    public async Task Events_arrive_over_amqp_with_body_content_type_and_partition_key()
    {
        var hub = "hub-" + Guid.NewGuid().ToString("N")[..8];
        await using var receiver = await HubReceiver.OpenAsync(broker, hub);
        var sink = NewSink(hub);
        await sink.StartAsync(CancellationToken.None);
        try
        {
            const int count = 300; // more than two batches of 128
            for (var i = 0; i < count; i++)
                Assert.True(sink.TryEnqueue(Event(i)));

            var received = await receiver.ReceiveAsync(count, TimeSpan.FromSeconds(30));

            Assert.Equal(count, received.Count);
            var seen = new HashSet<int>();
            foreach (var message in received)
            {
                var body = ((AmqpData)message.BodySection).Binary;
                using var json = JsonDocument.Parse(body);
                var index = json.RootElement.GetProperty("index").GetInt32();
                Assert.True(seen.Add(index), $"event {index} received twice");
                Assert.Equal($"device-{index % 7}", message.MessageAnnotations[new Symbol("x-opt-partition-key")]);
                Assert.Equal("application/json", message.Properties.ContentType.ToString());
                Assert.Equal($"event-{index}", message.Properties.MessageId);
                Assert.Equal("drift-event", message.ApplicationProperties["fededge-type"]);
            }
            Assert.Equal(count, seen.Count);
            Assert.Equal(count, sink.Sent);
            Assert.Equal(0, sink.Dropped);
        }
        finally
        {
            await sink.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task A_lost_connection_is_reopened_and_nothing_queued_is_lost()
    {
        var hub = "hub-" + Guid.NewGuid().ToString("N")[..8];
        await using var receiver = await HubReceiver.OpenAsync(broker, hub);
        var sink = NewSink(hub);
        await sink.StartAsync(CancellationToken.None);
        try
        {
            for (var i = 0; i < 50; i++) Assert.True(sink.TryEnqueue(Event(i)));
            var first = await receiver.ReceiveAsync(50, TimeSpan.FromSeconds(30));
            Assert.Equal(50, first.Count);

            await broker.CloseAllConnectionsAsync(); // drops the sink's connection and the test receiver's
            await receiver.ReopenAsync();
            for (var i = 50; i < 120; i++) Assert.True(sink.TryEnqueue(Event(i)));

            var second = await receiver.ReceiveAsync(70, TimeSpan.FromSeconds(60));
            var indices = second.Select(m => JsonDocument.Parse(((AmqpData)m.BodySection).Binary).RootElement.GetProperty("index").GetInt32()).ToHashSet();
            Assert.Equal(Enumerable.Range(50, 70).ToHashSet(), indices);
            Assert.True(sink.Connects >= 2, $"the sink should have reconnected after the drop (connects: {sink.Connects})");
            Assert.Equal(120, sink.Sent);
        }
        finally
        {
            await sink.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Full_queue_drops_instead_of_blocking_and_counts_it()
    {
        // Nothing listens on this port: the sink keeps retrying, the queue fills, producers are never held.
        var options = new EventHubsOptions
        {
            ConnectionString = $"Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=h;UseDevelopmentEmulator=true",
            QueueCapacity = 10,
            MaxBatchSize = 4,
        };
        var sink = new EventHubsSink(Options.Create(options), NullLogger<EventHubsSink>.Instance);
        await sink.StartAsync(CancellationToken.None);
        try
        {
            var accepted = 0;
            for (var i = 0; i < 100; i++) if (sink.TryEnqueue(Event(i))) accepted++;
            Assert.InRange(accepted, 10, 14); // the queue plus at most one batch taken out by the sender
            Assert.Equal(100 - accepted, sink.Dropped);
            Assert.Throws<ArgumentException>(() => sink.TryEnqueue(Event(0) with { PartitionKey = new string('k', 129) }));
        }
        finally
        {
            await sink.StopAsync(CancellationToken.None);
        }
        Assert.Equal(0, sink.Sent);
    }

    private EventHubsSink NewSink(string hub) => new(
        Options.Create(new EventHubsOptions { ConnectionString = broker.ConnectionString(hub), InitialRetryDelay = TimeSpan.FromMilliseconds(100) }),
        NullLogger<EventHubsSink>.Instance);

    private static EventHubsEvent Event(int index) => new(
        $"device-{index % 7}",
        Encoding.UTF8.GetBytes($$"""{"index":{{index}},"kind":"real"}"""),
        "drift-event",
        $"event-{index}");

    /// <summary>Reads what the sink sent: an AMQP 1.0 receiver on the broker's queue named like the hub.</summary>
    private sealed class HubReceiver : IAsyncDisposable
    {
        private readonly RabbitMqBroker _broker;
        private readonly string _hub;
        private Connection? _connection;
        private ReceiverLink? _link;

        private HubReceiver(RabbitMqBroker broker, string hub) => (_broker, _hub) = (broker, hub);

        public static async Task<HubReceiver> OpenAsync(RabbitMqBroker broker, string hub)
        {
            var receiver = new HubReceiver(broker, hub);
            await receiver.ReopenAsync();
            return receiver;
        }

        public async Task ReopenAsync()
        {
            if (_connection is { IsClosed: false }) await _connection.CloseAsync();
            var address = new Address("127.0.0.1", _broker.Port, RabbitMqBroker.KeyName, RabbitMqBroker.Key, "/", "amqp");
            _connection = await new ConnectionFactory().CreateAsync(address);
            var session = new Session(_connection);
            // Attaching to /queue/NAME declares the queue that the hub's address NAME routes to.
            _link = new ReceiverLink(session, "test-receiver-" + Guid.NewGuid().ToString("N"), "/queue/" + _hub);
        }

        public async Task<List<Message>> ReceiveAsync(int count, TimeSpan timeout)
        {
            var messages = new List<Message>();
            var deadline = DateTime.UtcNow + timeout;
            while (messages.Count < count && DateTime.UtcNow < deadline)
            {
                var message = await _link!.ReceiveAsync(TimeSpan.FromMilliseconds(500));
                if (message is null) continue;
                _link.Accept(message);
                messages.Add(message);
            }
            // Anything beyond the expected count (a duplicate) would show here.
            if (await _link!.ReceiveAsync(TimeSpan.FromMilliseconds(300)) is { } extra)
            {
                _link.Accept(extra);
                messages.Add(extra);
            }
            return messages;
        }

        public async ValueTask DisposeAsync()
        {
            if (_connection is { IsClosed: false }) await _connection.CloseAsync();
        }
    }
}
