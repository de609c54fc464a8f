using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

public sealed class ClusterAssignmentTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    /// <summary>Two clusters (3 and 5) over prototypes of R = 2 labels × D = 3 outputs; the device is mostly in 5.</summary>
    private static ClusterAssignment Assignment(string device = ProtocolFixture.DeviceId)
    {
        var a = new ClusterAssignment
        {
            Federation = ProtocolFixture.Federation,
            DeviceId = device,
            Epoch = 4,
            LabelCount = 2,
            OutputDimension = 3,
            CreatedUnixMs = 1_760_000_000_000,
        };
        a.Clusters.Add(new AssignedCluster { Cluster = 3, Prior = 0.1f, LabelDistribution = { 0.25f, 0.75f }, ModelVersion = 7 });
        a.Clusters.Add(new AssignedCluster { Cluster = 5, Prior = 0.9f, LabelDistribution = { 0.5f, 0.5f }, ModelVersion = 2 });
        a.Centres.Add(Enumerable.Range(0, 2 * 2 * 3).Select(i => i * 0.5f - 2));
        a.CentreClusters.Add([3, 5]);
        return a;
    }

    private ClusterAssignmentVerifier Verifier(string device = ProtocolFixture.DeviceId) => new(ProtocolFixture.Federation, device, _f.CloudKeys);

    private byte[] Sign(ClusterAssignment a) => new ClusterAssignmentSigner(_f.CloudKey).Sign(a);

    [Fact]
    public void Signed_assignment_round_trips_with_every_field()
    {
        var original = Assignment();
        var verified = Verifier().Verify(Sign(original)).GetValueOrThrow();
        Assert.Equal(_f.CloudKey.KeyId, verified.CloudKeyId);
        Assert.Equal(64, verified.Signature.Length);
        var unsigned = verified.Clone();
        unsigned.Signature = ByteString.Empty;
        unsigned.CloudKeyId = "";
        Assert.Equal(original, unsigned);
        Assert.Equal(5, verified.Clusters.MaxBy(c => c.Prior)!.Cluster);
    }

    [Fact]
    public void Assignment_for_another_device_or_federation_is_refused()
    {
        var signed = Sign(Assignment("pi-0008"));
        Assert.Equal(RejectReason.WrongDevice, Verifier().Verify(signed).Reason);
        Assert.True(Verifier("pi-0008").Verify(signed).IsAccepted);
        Assert.Equal(RejectReason.WrongFederation, new ClusterAssignmentVerifier("fleet-b", ProtocolFixture.DeviceId, _f.CloudKeys).Verify(Sign(Assignment())).Reason);
    }

    [Fact]
    public void Forged_or_altered_assignment_is_refused()
    {
        // Signed by a key that is not the trusted cloud key, under the cloud's key id.
        using (var forger = SigningKeyPair.Generate(_f.CloudKey.KeyId))
            Assert.Equal(RejectReason.BadSignature, Verifier().Verify(new ClusterAssignmentSigner(forger).Sign(Assignment())).Reason);
        using (var stranger = SigningKeyPair.Generate("someone"))
            Assert.Equal(RejectReason.UnknownKey, Verifier().Verify(new ClusterAssignmentSigner(stranger).Sign(Assignment())).Reason);

        // Moving the device to another cluster after signing breaks the signature.
        var signed = ClusterAssignment.Parser.ParseFrom(Sign(Assignment()));
        signed.Clusters[0].Prior = 0.9f;
        signed.Clusters[1].Prior = 0.1f;
        Assert.Equal(RejectReason.BadSignature, Verifier().Verify(signed.ToByteArray()).Reason);

        // The same bytes are not valid as another signed message type (domain separation).
        Assert.False(new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys).Verify(Sign(Assignment())).IsAccepted);
        Assert.Equal(RejectReason.Malformed, Verifier().Verify([0x0A, 0xFF, 0x01]).Reason);
        Assert.Equal(RejectReason.Oversized, Verifier().Verify(new byte[ClusterAssignmentVerifier.MaxBytes + 1]).Reason);
    }

    [Fact]
    public void Inconsistent_shapes_and_bad_values_are_refused()
    {
        (RejectReason, Action<ClusterAssignment>)[] spoilers =
        [
            (RejectReason.Inconsistent, a => a.Centres.RemoveAt(0)),
            (RejectReason.Inconsistent, a => a.CentreClusters.Add(9)),
            (RejectReason.Inconsistent, a => a.OutputDimension = 4),
            (RejectReason.Inconsistent, a => a.LabelCount = 0),
            (RejectReason.Inconsistent, a => a.Clusters[1].LabelDistribution.Add(0f)),
            (RejectReason.NonFinite, a => a.Centres[3] = float.NaN),
            (RejectReason.NonFinite, a => a.Clusters[0].LabelDistribution[0] = float.PositiveInfinity),
            (RejectReason.NonFinite, a => a.Clusters[0].LabelDistribution[0] = -0.1f),
            (RejectReason.Malformed, a => a.Clusters[0].Prior = 1.5f),
            (RejectReason.Malformed, a => a.Clusters[0].Prior = float.NaN),
            (RejectReason.Malformed, a => a.Clusters[0].Cluster = -1),
            (RejectReason.Malformed, a => a.Epoch = 0),
            (RejectReason.Malformed, a => a.Clusters.Clear()),
        ];
        foreach (var (reason, spoil) in spoilers)
        {
            var a = Assignment();
            spoil(a);
            var result = Verifier().Verify(Sign(a));
            Assert.False(result.IsAccepted);
            Assert.Equal(reason, result.Reason);
            Assert.False(string.IsNullOrEmpty(result.Message));
        }
    }

    [Fact]
    public void Cluster_models_are_published_on_the_cluster_topics_and_the_signed_announcement_names_the_cluster()
    {
        byte[] model = Enumerable.Range(0, 10_000).Select(i => (byte)(i % 251)).ToArray();
        var published = new ModelPublisher(_f.CloudKey).Publish(ProtocolFixture.Federation, 3, model, new ModelPublishOptions { ChunkSize = 4096, Cluster = 2 });
        var messages = published.Messages().ToList();
        Assert.Equal(MqttTopics.ClusterModel(ProtocolFixture.Federation, 2), messages[^1].Topic);
        Assert.Equal([.. Enumerable.Range(0, 3).Select(i => MqttTopics.ClusterModelChunk(ProtocolFixture.Federation, 2, 3, i))], messages[..^1].Select(m => m.Topic));
        var announcement = new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys).Verify(published.AnnouncementBytes).GetValueOrThrow();
        Assert.Equal(2, announcement.Cluster);
        var assembler = ModelAssembler.Start(published.AnnouncementBytes, new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys)).GetValueOrThrow();
        foreach (var chunk in published.Chunks) assembler.AddChunk(chunk);
        Assert.Equal(model, assembler.TryComplete().GetValueOrThrow());
        Assert.Throws<ArgumentOutOfRangeException>(() => new ModelPublisher(_f.CloudKey).Publish(ProtocolFixture.Federation, 3, model, new ModelPublishOptions { Cluster = -1 }));
        Assert.True(new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys, cluster: 2).Verify(published.AnnouncementBytes).IsAccepted);
        Assert.Equal(RejectReason.Inconsistent, new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys, cluster: 3).Verify(published.AnnouncementBytes).Reason);
        Assert.Equal(RejectReason.Inconsistent, new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys, cluster: 0).Verify(published.AnnouncementBytes).Reason);
    }
}
