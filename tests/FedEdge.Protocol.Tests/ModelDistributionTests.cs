using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

public sealed class ModelDistributionTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static byte[] Model(int size) => Enumerable.Range(0, size).Select(i => (byte)(i * 31 % 251)).ToArray();

    private PublishedModel Publish(byte[] model, int chunkSize = 4096) =>
        new ModelPublisher(_f.CloudKey).Publish(ProtocolFixture.Federation, 5, model, new ModelPublishOptions { ChunkSize = chunkSize, ParameterCount = 1234, CodecHints = ["sign:block=4096", "fp16"] });

    private ModelAnnouncementVerifier Verifier(string federation = ProtocolFixture.Federation) => new(federation, _f.CloudKeys);

    [Fact]
    public void Model_is_returned_only_after_all_chunks_and_the_hash_check()
    {
        byte[] model = Model(50_000);
        PublishedModel published = Publish(model);
        Assert.Equal(13, published.Chunks.Count);
        Assert.Equal(MqttTopics.Model(ProtocolFixture.Federation), published.Messages().Last().Topic);
        Assert.Equal(MqttTopics.ModelChunk(ProtocolFixture.Federation, 5, 0), published.Messages().First().Topic);

        ModelAssembler assembler = ModelAssembler.Start(published.AnnouncementBytes, Verifier()).GetValueOrThrow();
        Assert.Equal(["sign:block=4096", "fp16"], assembler.Announcement.CodecHints);
        Assert.Equal(1234, assembler.Announcement.ParameterCount);
        foreach (byte[] chunk in published.Chunks.Skip(1).Reverse())
        {
            Assert.Equal(ChunkOutcome.Stored, assembler.AddChunk(chunk).Outcome);
        }
        Assert.Equal(ChunkOutcome.Duplicate, assembler.AddChunk(published.Chunks[5]).Outcome);
        Decoded<byte[]> incomplete = assembler.TryComplete();
        Assert.Equal(RejectReason.Truncated, incomplete.Reason);
        Assert.Equal([0], assembler.MissingChunks());
        assembler.AddChunk(published.Chunks[0]);
        Assert.Equal(model, assembler.TryComplete().GetValueOrThrow());
    }

    [Fact]
    public void Corrupted_chunk_is_caught_by_the_signed_hash()
    {
        byte[] model = Model(10_000);
        PublishedModel published = Publish(model);
        ModelAssembler assembler = ModelAssembler.Start(published.AnnouncementBytes, Verifier()).GetValueOrThrow();
        for (int i = 0; i < published.Chunks.Count; i++)
        {
            ModelChunk chunk = ModelChunk.Parser.ParseFrom(published.Chunks[i]);
            if (i == 1)
            {
                byte[] data = chunk.Data.ToByteArray();
                data[100] ^= 1;
                chunk.Data = ByteString.CopyFrom(data);
            }
            assembler.AddChunk(chunk.ToByteArray());
        }
        Assert.Equal(RejectReason.HashMismatch, assembler.TryComplete().Reason);
        Assert.False(assembler.IsComplete); // ready to collect fresh copies
        foreach (byte[] chunk in published.Chunks)
        {
            assembler.AddChunk(chunk);
        }
        Assert.Equal(model, assembler.TryComplete().GetValueOrThrow());
    }

    [Fact]
    public void Foreign_and_misfit_chunks_are_rejected()
    {
        PublishedModel published = Publish(Model(10_000));
        ModelAssembler assembler = ModelAssembler.Start(published.AnnouncementBytes, Verifier()).GetValueOrThrow();
        var other = new ModelPublisher(_f.CloudKey).Publish("fleet-b", 5, Model(10_000), new ModelPublishOptions { ChunkSize = 4096 });
        Assert.Equal(RejectReason.WrongFederation, assembler.AddChunk(other.Chunks[0]).Reason);
        var newer = new ModelPublisher(_f.CloudKey).Publish(ProtocolFixture.Federation, 6, Model(10_000), new ModelPublishOptions { ChunkSize = 4096 });
        Assert.Equal(RejectReason.Inconsistent, newer.Chunks.Select(c => assembler.AddChunk(c).Reason).First());
        ModelChunk shortChunk = ModelChunk.Parser.ParseFrom(published.Chunks[0]);
        shortChunk.Data = ByteString.CopyFrom(shortChunk.Data.Span[..100]);
        Assert.Equal(RejectReason.Truncated, assembler.AddChunk(shortChunk.ToByteArray()).Reason);
        Assert.Equal(RejectReason.Malformed, assembler.AddChunk([0xFF, 0xFF, 0xFF]).Reason);
    }

    [Fact]
    public void Announcement_signature_federation_and_sizes_are_checked()
    {
        PublishedModel published = Publish(Model(10_000));
        Assert.True(Verifier().Verify(published.AnnouncementBytes).IsAccepted);
        Assert.Equal(RejectReason.WrongFederation, Verifier("fleet-b").Verify(published.AnnouncementBytes).Reason);
        Assert.Equal(RejectReason.UnknownKey, new ModelAnnouncementVerifier(ProtocolFixture.Federation, new VerificationKeyRing()).Verify(published.AnnouncementBytes).Reason);

        using var rogue = SigningKeyPair.Generate("cloud-2026");
        PublishedModel forged = new ModelPublisher(rogue).Publish(ProtocolFixture.Federation, 5, Model(10_000));
        Assert.Equal(RejectReason.BadSignature, Verifier().Verify(forged.AnnouncementBytes).Reason);

        for (int i = 0; i < published.AnnouncementBytes.Length; i++)
        {
            byte[] tampered = [.. published.AnnouncementBytes];
            tampered[i] ^= 0x04;
            Assert.False(Verifier().Verify(tampered).IsAccepted, $"byte {i}");
        }
        Assert.Equal(RejectReason.Oversized, new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys, maxModelBytes: 1000).Verify(published.AnnouncementBytes).Reason);
    }

    [Fact]
    public void Device_status_round_trips_and_checks_the_topic_identity()
    {
        byte[] will = DeviceStatuses.LastWill(ProtocolFixture.Federation, ProtocolFixture.DeviceId);
        DeviceStatus status = DeviceStatuses.Decode(will, ProtocolFixture.Federation, ProtocolFixture.DeviceId).GetValueOrThrow();
        Assert.Equal(DeviceState.Offline, status.State);
        Assert.Equal(RejectReason.WrongDevice, DeviceStatuses.Decode(will, ProtocolFixture.Federation, "pi-0001").Reason);
        Assert.Equal(RejectReason.WrongFederation, DeviceStatuses.Decode(will, "fleet-b", ProtocolFixture.DeviceId).Reason);
        Assert.Equal(RejectReason.Malformed, DeviceStatuses.Decode([0x08, 0xFF], ProtocolFixture.Federation, ProtocolFixture.DeviceId).Reason);
    }
}
