using FedEdge.Edge.Models;
using FedEdge.Edge.Mqtt;
using FedEdge.Protocol;

namespace FedEdge.Edge.Tests.Agent;

/// <summary>Receivers of cluster models (FedDAA): the signed cluster must match the topic's.</summary>
public sealed class ClusterModelReceiverTests : IAsyncDisposable
{
    private readonly TestFederation _federation = new();
    private readonly MqttLink _link = new(new MqttLinkOptions { Broker = new Uri("mqtt://127.0.0.1:1"), ClientId = "dev-1" });
    private readonly TempDirectory _dir = new();

    private ModelAnnouncementVerifier Verifier => new(TestFederation.Name, new VerificationKeyRing(_federation.CloudKey.VerificationKey));

    private PublishedModel Publish(long version, int cluster) =>
        new ModelPublisher(_federation.CloudKey).Publish(TestFederation.Name, version, _federation.ModelBytes(), new ModelPublishOptions
        {
            ChunkSize = 1024,
            ParameterCount = _federation.ParameterCount,
            Cluster = cluster,
        });

    private static async Task FeedAsync(ModelReceiver receiver, IEnumerable<(string Topic, byte[] Payload)> messages)
    {
        var list = messages.ToList();
        foreach (var (topic, payload) in (IEnumerable<(string, byte[])>)[list[^1], .. list[..^1]])
        {
            if (receiver.Handles(topic))
                await receiver.HandleAsync(new MqttInboundMessage(topic, payload, Retain: true), CancellationToken.None);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _link.DisposeAsync();
        _federation.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task A_cluster_receiver_follows_its_own_topics_only_and_verifies_the_model()
    {
        var receiver = new ModelReceiver(TestFederation.Name, Verifier, _link, cluster: 2);
        Assert.Equal(MqttTopics.ClusterModel(TestFederation.Name, 2), receiver.AnnouncementTopic);
        Assert.False(receiver.Handles(MqttTopics.Model(TestFederation.Name)));
        Assert.False(receiver.Handles(MqttTopics.ClusterModel(TestFederation.Name, 21)));
        Assert.True(receiver.Handles(MqttTopics.ClusterModelChunk(TestFederation.Name, 2, 3, 0)));

        await FeedAsync(receiver, Publish(3, cluster: 2).Messages());
        Assert.True(receiver.Verified.TryRead(out var model));
        Assert.Equal((2, 3L), (model.Cluster, model.Version));
    }

    [Fact]
    public async Task An_announcement_signed_for_another_cluster_is_rejected_on_this_clusters_topic()
    {
        var receiver = new ModelReceiver(TestFederation.Name, Verifier, _link, cluster: 2);
        // Cluster 1's genuine announcement and chunks, replayed onto cluster 2's topics.
        var replayed = Publish(5, cluster: 1).Messages().Select(m => (m.Topic.Replace("/cluster/1/", "/cluster/2/", StringComparison.Ordinal), m.Payload));
        await FeedAsync(receiver, replayed);
        Assert.False(receiver.Verified.TryRead(out _));
        Assert.Equal(1, receiver.RejectedCount);

        // The federation's own model (cluster 0) on cluster 2's topic likewise.
        var zero = Publish(6, cluster: 0);
        await receiver.HandleAsync(new MqttInboundMessage(receiver.AnnouncementTopic, zero.AnnouncementBytes, Retain: true), CancellationToken.None);
        Assert.Equal(2, receiver.RejectedCount);
    }

    [Fact]
    public void A_store_does_not_hand_out_another_clusters_model()
    {
        var published = Publish(4, cluster: 1);
        var model = new VerifiedModel(published.Announcement, published.AnnouncementBytes, _federation.ModelBytes());
        new ModelStore(_dir.Combine("c1"), Verifier, fsync: false, cluster: 1).Save(model);
        Assert.Equal(4, new ModelStore(_dir.Combine("c1"), Verifier, fsync: false, cluster: 1).TryLoad()!.Version);
        Assert.Null(new ModelStore(_dir.Combine("c1"), Verifier, fsync: false, cluster: 3).TryLoad());
    }
}
