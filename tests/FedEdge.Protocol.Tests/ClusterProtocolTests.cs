using FedEdge.Compression;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

/// <summary>FedDAA additions to the wire protocol: P_c(y) in the signed model announcement, and declines.</summary>
public sealed class ClusterProtocolTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static readonly byte[] ModelBytes = Enumerable.Range(0, 5000).Select(i => (byte)(i * 7)).ToArray();

    private PublishedModel Publish(int cluster, IReadOnlyList<float> labels) =>
        new ModelPublisher(_f.CloudKey).Publish(ProtocolFixture.Federation, 3, ModelBytes,
            new ModelPublishOptions { ChunkSize = 1024, ParameterCount = 10, Cluster = cluster, LabelDistribution = labels });

    private ModelAnnouncementVerifier Verifier(int cluster) => new(ProtocolFixture.Federation, _f.CloudKeys, cluster: cluster);

    [Fact]
    public void Label_distribution_round_trips_in_the_signed_announcement()
    {
        float[] labels = [0.5f, 0.25f, 0.125f, 0.125f];
        PublishedModel published = Publish(2, labels);

        ModelAnnouncement verified = Verifier(2).Verify(published.AnnouncementBytes).GetValueOrThrow();

        Assert.Equal(labels, verified.LabelDistribution);
        Assert.Equal(MqttTopics.ClusterModel(ProtocolFixture.Federation, 2), published.Messages().Last().Topic);
    }

    [Fact]
    public void The_signature_covers_the_label_distribution()
    {
        PublishedModel published = Publish(2, [0.5f, 0.5f]);
        ModelAnnouncement tampered = ModelAnnouncement.Parser.ParseFrom(published.AnnouncementBytes);
        tampered.LabelDistribution[0] = 0.25f;
        tampered.LabelDistribution[1] = 0.75f;
        Assert.Equal(RejectReason.BadSignature, Verifier(2).Verify(tampered.ToByteArray()).Reason);

        ModelAnnouncement stripped = ModelAnnouncement.Parser.ParseFrom(published.AnnouncementBytes);
        stripped.LabelDistribution.Clear();
        Assert.Equal(RejectReason.BadSignature, Verifier(2).Verify(stripped.ToByteArray()).Reason);
    }

    [Fact]
    public void Announcements_without_the_field_sign_and_verify_as_before()
    {
        // What a cloud without P_c(y) support sends: field 12 absent.
        var old = new ModelAnnouncement
        {
            Federation = ProtocolFixture.Federation,
            ModelVersion = 3,
            ModelSha256 = ByteString.CopyFrom(System.Security.Cryptography.SHA256.HashData(ModelBytes)),
            TotalSize = ModelBytes.Length,
            ChunkSize = 1024,
            ChunkCount = 5,
            Cluster = 1,
            CloudKeyId = _f.CloudKey.KeyId,
        };
        byte[] signed = SignedMessage.Sign(old.ToByteArray(), SignedMessage.ModelAnnouncementDomain, _f.CloudKey);
        Assert.Empty(Verifier(1).Verify(signed).GetValueOrThrow().LabelDistribution);

        // And an empty distribution adds no bytes: the publisher's announcement is the old message plus its signature.
        PublishedModel published = Publish(1, []);
        ModelAnnouncement parsed = ModelAnnouncement.Parser.ParseFrom(published.AnnouncementBytes);
        parsed.Signature = ByteString.Empty;
        old.CreatedUnixMs = parsed.CreatedUnixMs;
        old.ParameterCount = parsed.ParameterCount;
        old.ModelFormat = parsed.ModelFormat;
        Assert.Equal(old.ToByteArray(), parsed.ToByteArray());
        Assert.Empty(Verifier(1).Verify(published.AnnouncementBytes).GetValueOrThrow().LabelDistribution);
    }

    [Theory]
    [InlineData(1, new[] { 0.5f, 0.4f }, "sums to")]
    [InlineData(1, new[] { 1.5f, -0.5f }, "non-negative")]
    [InlineData(1, new[] { float.NaN, 1f }, "finite")]
    [InlineData(0, new[] { 0.5f, 0.5f }, "cluster model")]
    public void Bad_label_distributions_are_refused_by_publisher_and_verifier(int cluster, float[] labels, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => Publish(cluster, labels));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);

        // A correctly signed announcement with such a distribution (a buggy cloud) is refused by the device.
        var announcement = ModelAnnouncement.Parser.ParseFrom(Publish(cluster, []).AnnouncementBytes);
        announcement.Signature = ByteString.Empty;
        announcement.LabelDistribution.Add(labels);
        byte[] signed = SignedMessage.Sign(announcement.ToByteArray(), SignedMessage.ModelAnnouncementDomain, _f.CloudKey);
        Decoded<ModelAnnouncement> verified = Verifier(cluster).Verify(signed);
        Assert.Equal(RejectReason.Malformed, verified.Reason);
        Assert.Contains(expected, verified.Message, StringComparison.Ordinal);
    }

    private byte[] SignedDecline(Action<UpdateEnvelope>? configure = null)
    {
        UpdateEnvelope decline = UpdateDeclines.Create(ProtocolFixture.Federation, ProtocolFixture.DeviceId, cluster: 3, version: 7, codec: "sign", dimension: 100);
        configure?.Invoke(decline);
        return new UpdateEnvelopeSigner(_f.DeviceKey).Sign(decline);
    }

    [Fact]
    public void A_signed_decline_verifies_and_decodes_to_zero()
    {
        VerifiedUpdate verified = _f.Verifier().Verify(SignedDecline(), ProtocolFixture.DeviceId, expectedDimension: 100).GetValueOrThrow();

        Assert.True(verified.IsDecline);
        Assert.Equal(0, verified.Envelope.SampleCount);
        Assert.Equal(7, verified.Envelope.BaseModelVersion);
        Assert.Equal(3, verified.Envelope.Cluster);
        float[] destination = Enumerable.Repeat(9f, 100).ToArray();
        Assert.True(verified.DecodeInto(destination).IsValid);
        Assert.All(destination, v => Assert.Equal(0f, v));
        Assert.False(_f.Verifier().Verify(_f.SignedUpdate(100)).GetValueOrThrow().IsDecline);
        // Drift statistics may ride along (the device's FedRC weights still count towards P_c(y)).
        Assert.True(_f.Verifier().Verify(SignedDecline(e => e.Drift = new DriftStatistics { WindowIndex = 1 })).GetValueOrThrow().IsDecline);
    }

    public static TheoryData<string, string> NotDeclines => new()
    {
        { "samples", "empty payload with sample_count 5" },
        { "payload", "sample_count 0 with a" },
        { "cluster0", "decline for cluster 0" },
        { "metrics", "carries no training metrics" },
        { "report", "no drift report" },
    };

    [Theory]
    [MemberData(nameof(NotDeclines))]
    public void Only_an_exact_decline_may_have_no_payload_or_no_samples(string change, string expected)
    {
        byte[] signed = SignedDecline(e =>
        {
            switch (change)
            {
                case "samples": e.SampleCount = 5; break;
                case "payload": e.Payload = ByteString.CopyFrom(SignCodec.Default.Encode(new float[100])); break;
                case "cluster0": e.Cluster = 0; break;
                case "metrics": e.Metrics = new TrainingMetrics { Loss = 1 }; break;
                case "report": e.DriftReport = new DriftReport { Kind = DriftKind.None }; break;
            }
        });

        Decoded<VerifiedUpdate> verified = _f.Verifier().Verify(signed, ProtocolFixture.DeviceId, expectedDimension: 100);

        Assert.Equal(RejectReason.Malformed, verified.Reason);
        Assert.Contains(expected, verified.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_decline_is_checked_like_any_update_before_its_shape()
    {
        byte[] signed = SignedDecline();
        Assert.Equal(RejectReason.DimensionMismatch, _f.Verifier().Verify(signed, expectedDimension: 101).Reason);
        Assert.Equal(RejectReason.WrongDevice, _f.Verifier().Verify(signed, transportDeviceId: "pi-0008").Reason);
        signed[20] ^= 1;
        Assert.NotEqual(RejectReason.None, _f.Verifier().Verify(signed).Reason);
        Assert.Throws<ArgumentOutOfRangeException>(() => UpdateDeclines.Create(ProtocolFixture.Federation, ProtocolFixture.DeviceId, cluster: 0, version: 1, codec: "sign", dimension: 100));
    }
}
