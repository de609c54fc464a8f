using FedEdge.Edge.Models;
using FedEdge.Edge.Mqtt;
using FedEdge.Protocol;

namespace FedEdge.Edge.Tests.Agent;

/// <summary>The receiver on its own: messages are fed directly, the link is never connected.</summary>
public sealed class ModelReceiverTests : IAsyncDisposable
{
    private readonly TestFederation _federation = new();
    private readonly MqttLink _link = new(new MqttLinkOptions { Broker = new Uri("mqtt://127.0.0.1:1"), ClientId = "dev-1" });

    private ModelReceiver Receiver(long current = -1) =>
        new(TestFederation.Name, new ModelAnnouncementVerifier(TestFederation.Name, new VerificationKeyRing(_federation.CloudKey.VerificationKey)), _link, current);

    private static async Task FeedAsync(ModelReceiver receiver, PublishedModel published, bool announcementFirst = true)
    {
        var messages = published.Messages().ToList();
        if (announcementFirst)
            messages = [messages[^1], .. messages[..^1]];
        foreach (var (topic, payload) in messages)
            await receiver.HandleAsync(new MqttInboundMessage(topic, payload, Retain: true), CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        await _link.DisposeAsync();
        _federation.Dispose();
    }

    [Fact]
    public async Task Assembles_and_verifies_a_chunked_model()
    {
        var bytes = _federation.ModelBytes();
        var published = _federation.Publish(3, bytes);
        Assert.True(published.Chunks.Count > 1);
        var receiver = Receiver();
        await FeedAsync(receiver, published);

        Assert.True(receiver.Verified.TryRead(out var model));
        Assert.Equal(3, model.Version);
        Assert.Equal(bytes, model.ModelBytes);
        Assert.Equal(3, receiver.CurrentVersion);
        Assert.Equal(0, receiver.RejectedCount);
    }

    [Fact]
    public async Task Rejects_an_announcement_signed_by_another_key()
    {
        using var impostor = SigningKeyPair.Generate("cloud");
        var receiver = Receiver();
        await FeedAsync(receiver, _federation.Publish(1, _federation.ModelBytes(), impostor));
        Assert.False(receiver.Verified.TryRead(out _));
        Assert.Equal(1, receiver.RejectedCount);
        Assert.Equal(-1, receiver.CurrentVersion);
    }

    [Fact]
    public async Task Rejects_a_model_whose_chunks_do_not_match_the_signed_hash()
    {
        var good = _federation.Publish(1, _federation.ModelBytes());
        var other = _federation.Publish(1, _federation.ModelBytes(shift: 0.5f));
        var receiver = Receiver();
        // The signed announcement of one model with the (same-sized) chunks of another.
        await receiver.HandleAsync(new MqttInboundMessage(MqttTopics.Model(TestFederation.Name), good.AnnouncementBytes, true), CancellationToken.None);
        for (var i = 0; i < other.Chunks.Count; i++)
            await receiver.HandleAsync(new MqttInboundMessage(MqttTopics.ModelChunk(TestFederation.Name, 1, i), other.Chunks[i], true), CancellationToken.None);

        Assert.False(receiver.Verified.TryRead(out _));
        Assert.True(receiver.RejectedCount >= 1);

        // Fresh, correct chunks (as redelivered after re-subscribing) complete it.
        for (var i = 0; i < good.Chunks.Count; i++)
            await receiver.HandleAsync(new MqttInboundMessage(MqttTopics.ModelChunk(TestFederation.Name, 1, i), good.Chunks[i], true), CancellationToken.None);
        Assert.True(receiver.Verified.TryRead(out var model));
        Assert.Equal(1, model.Version);
    }

    [Fact]
    public async Task Ignores_versions_not_newer_than_the_current_one_and_chunks_without_announcement()
    {
        var receiver = Receiver(current: 5);
        await FeedAsync(receiver, _federation.Publish(5, _federation.ModelBytes()));
        await FeedAsync(receiver, _federation.Publish(4, _federation.ModelBytes()));
        Assert.False(receiver.Verified.TryRead(out _));

        // Chunks before their announcement are not collected; the announcement then subscribes and waits for them.
        var fresh = Receiver();
        await FeedAsync(fresh, _federation.Publish(7, _federation.ModelBytes()), announcementFirst: false);
        Assert.False(fresh.Verified.TryRead(out _));
    }
}
