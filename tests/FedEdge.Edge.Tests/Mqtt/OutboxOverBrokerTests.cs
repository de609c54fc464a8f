using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Outbox;
using FedEdge.Edge.Tests.Brokers;
using FedEdge.Protocol;

namespace FedEdge.Edge.Tests.Mqtt;

/// <summary>
/// The agent's transport against a real broker: persistent session, outbox drained after a broker restart,
/// nothing lost and nothing sent twice. Run once against MQTTnet's embedded broker and once against Mosquitto.
/// </summary>
public abstract class OutboxOverBrokerTests : IAsyncLifetime
{
    protected const string Federation = "fed";
    protected const string DeviceId = "dev-1";
    protected const string DevicePassword = "device-secret";
    private readonly TempDirectory _dir = new();
    private readonly List<Func<Task>> _cleanup = [];

    protected abstract ITestBroker Broker { get; }

    protected string OutboxDirectory => _dir.Combine("outbox");

    /// <summary>Update ids the "cloud" has received on the device's update topic, in arrival order.</summary>
    protected abstract IReadOnlyList<string> ReceivedUpdateIds();

    /// <summary>Starts whatever observes the updates (called after the broker started).</summary>
    protected virtual Task StartObserverAsync() => Task.CompletedTask;

    public virtual Task InitializeAsync()
    {
        Broker.AddUser(DeviceId, DevicePassword);
        return Task.CompletedTask;
    }

    public virtual async Task DisposeAsync()
    {
        foreach (var cleanup in Enumerable.Reverse(_cleanup))
            await cleanup();
        await Broker.DisposeAsync();
        _dir.Dispose();
    }

    protected MqttLinkOptions LinkOptions(string clientId = DeviceId, string password = DevicePassword, IReadOnlyList<string>? subscriptions = null) => new()
    {
        Broker = Broker.Address,
        ClientId = clientId,
        UserName = clientId,
        Password = password,
        StatusTopic = MqttTopics.Status(Federation, clientId),
        Subscriptions = subscriptions ?? [MqttTopics.ModelFilter(Federation)],
        ReconnectMinDelay = TimeSpan.FromMilliseconds(50),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
        KeepAlive = TimeSpan.FromSeconds(5),
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    protected async Task<MqttLink> StartLinkAsync(MqttLinkOptions options)
    {
        var link = new MqttLink(options);
        _cleanup.Add(async () => await link.DisposeAsync());
        await link.StartAsync();
        return link;
    }

    protected async Task<(UpdateOutbox Outbox, MqttLink Link, OutboxSender Sender)> StartDeviceAsync()
    {
        var outbox = new UpdateOutbox(new OutboxOptions { Directory = OutboxDirectory, Fsync = false });
        var link = await StartLinkAsync(LinkOptions());
        var sender = new OutboxSender(outbox, link, MqttTopics.Update(Federation, DeviceId));
        var stop = new CancellationTokenSource();
        var running = sender.RunAsync(stop.Token);
        _cleanup.Add(async () =>
        {
            await stop.CancelAsync();
            await running;
            outbox.Dispose();
            stop.Dispose();
        });
        return (outbox, link, sender);
    }

    private static Task EnqueueAsync(UpdateOutbox outbox, int index) =>
        outbox.EnqueueAsync($"u{index:D2}", Encoding.UTF8.GetBytes($"u{index:D2}"));

    [Fact]
    public async Task Broker_restart_agent_reconnects_and_drains_its_outbox_nothing_lost_nothing_twice()
    {
        await Broker.StartAsync();
        await StartObserverAsync();
        var (outbox, link, sender) = await StartDeviceAsync();
        await link.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));

        for (var i = 0; i < 5; i++)
            await EnqueueAsync(outbox, i);
        await Eventually.HoldsAsync(() => ReceivedUpdateIds().Count >= 5, "first five updates received");

        await Broker.StopAsync();
        await link.WaitUntilDisconnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 5; i < 10; i++)
            await EnqueueAsync(outbox, i); // the agent keeps producing while the link is down
        Assert.Equal(5, outbox.Count);

        await Broker.StartAsync();
        await Eventually.HoldsAsync(() => ReceivedUpdateIds().Count >= 10 && outbox.Count == 0, () => $"outbox drained after the restart (received {string.Join(",", ReceivedUpdateIds())}; outbox {outbox.Count}; connects {link.ConnectCount})", 30);
        // A sentinel queued after the drain: the outbox sends in order, so a duplicate of an earlier update would arrive
        // before it.
        await EnqueueAsync(outbox, 10);
        await Eventually.HoldsAsync(() => ReceivedUpdateIds().Contains("u10"), "the sentinel update u10");

        Assert.Equal(Enumerable.Range(0, 11).Select(i => $"u{i:D2}"), ReceivedUpdateIds());
        Assert.Equal(11, sender.SentCount);
        Assert.True(link.ConnectCount >= 2, $"expected a reconnect, saw {link.ConnectCount} connects");
    }

    [Fact]
    public async Task Retained_model_messages_reach_the_agent_on_connect()
    {
        await Broker.StartAsync();
        var cloud = await StartLinkAsync(LinkOptions("cloud", "cloud-secret", subscriptions: []));
        await cloud.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await cloud.PublishAsync(MqttTopics.Model(Federation), "announcement"u8.ToArray(), retain: true);
        await cloud.PublishAsync(MqttTopics.ModelChunk(Federation, 1, 0), "chunk-0"u8.ToArray(), retain: true);

        var device = await StartLinkAsync(LinkOptions());
        var received = new Dictionary<string, string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (received.Count < 2)
        {
            var message = await device.Inbound.ReadAsync(timeout.Token);
            received[message.Topic] = Encoding.UTF8.GetString(message.Payload.Span);
            Assert.True(message.Retain);
        }
        Assert.Equal("announcement", received[MqttTopics.Model(Federation)]);
        Assert.Equal("chunk-0", received[MqttTopics.ModelChunk(Federation, 1, 0)]);
    }

    [Fact]
    public async Task Wrong_password_never_connects_and_keeps_retrying()
    {
        await Broker.StartAsync();
        var link = await StartLinkAsync(LinkOptions(password: "wrong"));
        await Eventually.HoldsAsync(() => link.FailedConnectAttempts >= 3, () => $"three refused attempts (saw {link.FailedConnectAttempts})");
        Assert.False(link.IsConnected);
        Assert.Equal(0, link.ConnectCount);
    }

    protected Task AddCloudUserAsync()
    {
        Broker.AddUser("cloud", "cloud-secret");
        return Task.CompletedTask;
    }
}

public sealed class EmbeddedBrokerOutboxTests : OutboxOverBrokerTests
{
    private readonly EmbeddedBroker _broker = new();

    protected override ITestBroker Broker => _broker;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await AddCloudUserAsync();
    }

    protected override IReadOnlyList<string> ReceivedUpdateIds() =>
        [.. _broker.Published.Where(p => p.Topic == MqttTopics.Update(Federation, DeviceId)).Select(p => Encoding.UTF8.GetString(p.Payload))];

    [Fact]
    public async Task Connects_with_a_persistent_session_credentials_and_a_retained_offline_will()
    {
        await Broker.StartAsync();
        var (_, link, _) = await StartDeviceAsync();
        await link.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));

        var connect = _broker.Connects.Single(c => c.ClientId == DeviceId);
        Assert.False(connect.CleanSession);
        Assert.True(connect.SessionExpiryInterval > 0);
        Assert.Equal(DeviceId, connect.UserName);
        Assert.Equal(MQTTnet.Formatter.MqttProtocolVersion.V500, connect.ProtocolVersion);

        var status = await _broker.Server.GetRetainedMessageAsync(MqttTopics.Status(Federation, DeviceId));
        Assert.Equal("online", Encoding.UTF8.GetString(status.Payload.ToArray()));
    }

    [Fact]
    public async Task Dropped_by_the_broker_the_will_says_offline_and_the_agent_comes_back_online()
    {
        await Broker.StartAsync();
        var (_, link, _) = await StartDeviceAsync();
        await link.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var statusTopic = MqttTopics.Status(Federation, DeviceId);
        var statuses = new ConcurrentQueue<string>();
        _broker.Server.RetainedMessageChangedAsync += e =>
        {
            if (e.ChangedRetainedMessage.Topic == statusTopic)
                statuses.Enqueue(Encoding.UTF8.GetString(e.ChangedRetainedMessage.Payload.ToArray()));
            return Task.CompletedTask;
        };

        await _broker.Server.DisconnectClientAsync(DeviceId, new MQTTnet.Server.MqttServerClientDisconnectOptions { ReasonCode = MQTTnet.Protocol.MqttDisconnectReasonCode.AdministrativeAction });

        await Eventually.HoldsAsync(() => statuses.Contains("offline") && link.ConnectCount >= 2 && statuses.LastOrDefault() == "online", "offline will, then online again");
    }

    [Fact]
    public async Task An_update_the_broker_refuses_for_good_is_set_aside_and_the_rest_still_go_out()
    {
        await Broker.StartAsync();
        _broker.Server.InterceptingPublishAsync += e =>
        {
            if (Encoding.UTF8.GetString(e.ApplicationMessage.Payload.ToArray()) == "u01")
            {
                e.ProcessPublish = false;
                e.Response.ReasonCode = MQTTnet.Protocol.MqttPubAckReasonCode.NotAuthorized;
            }
            return Task.CompletedTask;
        };
        var (outbox, link, sender) = await StartDeviceAsync();
        for (var i = 0; i < 3; i++)
            await outbox.EnqueueAsync($"u{i:D2}", Encoding.UTF8.GetBytes($"u{i:D2}"));
        await Eventually.HoldsAsync(() => outbox.Count == 0, "outbox emptied");
        Assert.Equal(2, sender.SentCount);
        Assert.Single(Directory.GetFiles(Path.Combine(OutboxDirectory, UpdateOutbox.RejectedDirectoryName)));
    }

    [Fact]
    public async Task A_chunked_update_refused_with_a_retryable_code_stays_in_the_outbox_and_all_its_chunks_are_sent_again()
    {
        // The cloud's answers on the chunk that completes an update: QuotaExceeded (its reassembly share spent), then
        // ImplementationSpecificError (storage failed), then success (stored). Only the last one may remove the item.
        await Broker.StartAsync();
        var answers = new ConcurrentQueue<MQTTnet.Protocol.MqttPubAckReasonCode>([MQTTnet.Protocol.MqttPubAckReasonCode.QuotaExceeded,
            MQTTnet.Protocol.MqttPubAckReasonCode.ImplementationSpecificError]);
        var lastChunks = 0;
        _broker.Server.InterceptingPublishAsync += e =>
        {
            if (e.ApplicationMessage.Topic != MqttTopics.Update(Federation, DeviceId)) return Task.CompletedTask;
            var chunk = FedEdge.Protocol.Messages.UpdateFrame.Parser.ParseFrom(e.ApplicationMessage.Payload.ToArray()).Chunk;
            if (chunk.Index != chunk.Count - 1) return Task.CompletedTask;
            Interlocked.Increment(ref lastChunks);
            if (answers.TryDequeue(out var code))
            {
                e.ProcessPublish = false;
                e.Response.ReasonCode = code;
            }
            return Task.CompletedTask;
        };
        var outbox = new UpdateOutbox(new OutboxOptions { Directory = OutboxDirectory, Fsync = false });
        var link = await StartLinkAsync(LinkOptions());
        var id = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
        var envelope = System.Security.Cryptography.RandomNumberGenerator.GetBytes(4000);
        var sender = new OutboxSender(outbox, link, MqttTopics.Update(Federation, DeviceId),
            item => [.. UpdateFramer.Frame(item.Payload.Span, Convert.FromHexString(item.UpdateId), maxFrameBytes: 1000).Select(f => (ReadOnlyMemory<byte>)f)]);
        using var stop = new CancellationTokenSource();
        var running = sender.RunAsync(stop.Token);
        try
        {
            await outbox.EnqueueAsync(id, envelope);
            await Eventually.HoldsAsync(() => sender.SentCount == 1, "the update acknowledged on the third sending");
            Assert.Equal(0, outbox.Count);
            Assert.Equal(3, lastChunks);
            // Every sending carried every chunk: 5 chunks of 4,000 bytes in frames of 1,000, three times.
            var chunksSent = _broker.Published.Count(p => p.Topic == MqttTopics.Update(Federation, DeviceId));
            Assert.Equal(15, chunksSent);
            Assert.False(Directory.Exists(Path.Combine(OutboxDirectory, UpdateOutbox.RejectedDirectoryName))
                && Directory.GetFiles(Path.Combine(OutboxDirectory, UpdateOutbox.RejectedDirectoryName)).Length > 0);
        }
        finally
        {
            await stop.CancelAsync();
            await running;
            outbox.Dispose();
        }
    }
}

public sealed class MosquittoOutboxTests : OutboxOverBrokerTests
{
    private readonly MosquittoBroker _broker = new();
    private readonly ConcurrentQueue<string> _received = new();

    protected override ITestBroker Broker => _broker;

    public override async Task InitializeAsync()
    {
        Assert.True(MosquittoServer.IsInstalled, MosquittoServer.InstallHint);
        await base.InitializeAsync();
        await AddCloudUserAsync();
    }

    protected override IReadOnlyList<string> ReceivedUpdateIds() => [.. _received];

    /// <summary>
    /// The "cloud" subscribes with its own persistent session; Mosquitto keeps that session and the QoS 1
    /// messages queued for it across its restart (persistence on), so updates sent while it reconnects arrive.
    /// </summary>
    protected override async Task StartObserverAsync()
    {
        var cloud = await StartLinkAsync(LinkOptions("cloud", "cloud-secret", subscriptions: [MqttTopics.UpdateFilter(Federation)]));
        await cloud.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
        _ = Task.Run(async () =>
        {
            await foreach (var message in cloud.Inbound.ReadAllAsync())
                _received.Enqueue(Encoding.UTF8.GetString(message.Payload.Span));
        });
    }
}
