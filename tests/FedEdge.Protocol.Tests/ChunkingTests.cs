using System.Security.Cryptography;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

public sealed class ChunkingTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static ReadOnlySpan<byte> IdOf(byte[] signed) => UpdateEnvelope.Parser.ParseFrom(signed).UpdateId.Span;

    [Fact]
    public void Small_envelope_travels_in_one_frame()
    {
        byte[] signed = _f.SignedUpdate(d: 1000);
        IReadOnlyList<byte[]> frames = UpdateFramer.Frame(signed, IdOf(signed));
        Assert.Single(frames);
        Assert.Equal(signed, UpdateFrame.Parser.ParseFrom(frames[0]).Envelope.ToByteArray());
        FrameResult result = new UpdateReassembler(new ReassemblyOptions()).Accept(ProtocolFixture.DeviceId, frames[0]);
        Assert.Equal(FrameOutcome.Complete, result.Outcome);
        Assert.Equal(signed, result.Envelope.ToArray());
    }

    [Fact]
    public void Chunks_in_any_order_with_duplicates_reassemble_and_verify()
    {
        byte[] signed = _f.SignedUpdate(d: 200_000, spec: "fp32");
        IReadOnlyList<byte[]> frames = UpdateFramer.Frame(signed, IdOf(signed), maxFrameBytes: 64 << 10);
        Assert.True(frames.Count > 10);
        Assert.All(frames, f => Assert.True(f.Length <= 64 << 10));
        var reassembler = new UpdateReassembler(new ReassemblyOptions());
        var order = Enumerable.Range(0, frames.Count).Reverse().ToList();
        order.Insert(3, order[1]); // a QoS-1 redelivery
        FrameResult last = default;
        foreach (int i in order)
        {
            last = reassembler.Accept(ProtocolFixture.DeviceId, frames[i]);
            Assert.NotEqual(FrameOutcome.Rejected, last.Outcome);
        }
        Assert.Equal(FrameOutcome.Complete, last.Outcome);
        Assert.Equal(signed, last.Envelope.ToArray());
        Assert.True(_f.Verifier().Verify(last.Envelope.Span, ProtocolFixture.DeviceId).IsAccepted);
        Assert.Equal(0, reassembler.PendingCount);
        Assert.Equal(0, reassembler.PendingBytes);
        // A redelivery after completion is recognised and allocates nothing.
        Assert.Equal(FrameOutcome.Duplicate, reassembler.Accept(ProtocolFixture.DeviceId, frames[1]).Outcome);
        Assert.Equal(0, reassembler.PendingCount);
    }

    [Fact]
    public void Missing_chunks_expire_and_free_their_memory()
    {
        var time = new ManualTime(DateTimeOffset.UnixEpoch);
        byte[] signed = _f.SignedUpdate(d: 100_000, spec: "fp32");
        IReadOnlyList<byte[]> frames = UpdateFramer.Frame(signed, IdOf(signed), maxFrameBytes: 64 << 10);
        var reassembler = new UpdateReassembler(new ReassemblyOptions { Timeout = TimeSpan.FromSeconds(30) }, time);
        foreach (byte[] frame in frames.Skip(1))
        {
            Assert.Equal(FrameOutcome.Pending, reassembler.Accept(ProtocolFixture.DeviceId, frame).Outcome);
        }
        Assert.Equal(1, reassembler.PendingCount);
        Assert.Equal(signed.Length, reassembler.PendingBytes);
        time.Now += TimeSpan.FromSeconds(31);
        Assert.Equal(1, reassembler.RemoveExpired());
        Assert.Equal(0, reassembler.PendingBytes);
        // The missing chunk alone now starts a fresh, incomplete reassembly.
        Assert.Equal(FrameOutcome.Pending, reassembler.Accept(ProtocolFixture.DeviceId, frames[0]).Outcome);
    }

    [Fact]
    public void Corrupted_chunk_fails_the_hash_check()
    {
        byte[] signed = _f.SignedUpdate(d: 50_000, spec: "fp32");
        IReadOnlyList<byte[]> frames = UpdateFramer.Frame(signed, IdOf(signed), maxFrameBytes: 16 << 10);
        UpdateFrame corrupted = UpdateFrame.Parser.ParseFrom(frames[2]);
        byte[] data = corrupted.Chunk.Data.ToByteArray();
        data[7] ^= 0xFF;
        corrupted.Chunk.Data = ByteString.CopyFrom(data);
        var reassembler = new UpdateReassembler(new ReassemblyOptions());
        FrameResult last = default;
        for (int i = 0; i < frames.Count; i++)
        {
            last = reassembler.Accept(ProtocolFixture.DeviceId, i == 2 ? corrupted.ToByteArray() : frames[i]);
        }
        Assert.Equal(FrameOutcome.Rejected, last.Outcome);
        Assert.Equal(RejectReason.HashMismatch, last.Reason);
        Assert.Equal(0, reassembler.PendingBytes);
    }

    private static byte[] ChunkFrame(byte[] id, int index, int count, long total, byte[] data, byte[]? sha = null) => new UpdateFrame
    {
        Chunk = new UpdateChunk
        {
            UpdateId = ByteString.CopyFrom(id),
            Index = index,
            Count = count,
            TotalSize = total,
            TotalSha256 = ByteString.CopyFrom(sha ?? new byte[32]),
            Data = ByteString.CopyFrom(data),
        },
    }.ToByteArray();

    [Fact]
    public void Oversized_inconsistent_and_over_budget_chunks_are_rejected()
    {
        byte[] id = RandomNumberGenerator.GetBytes(16);
        var options = new ReassemblyOptions { MaxEnvelopeBytes = 1 << 20, MaxPendingBytes = 3 << 20, MaxPendingPerDevice = 2 };
        var reassembler = new UpdateReassembler(options);
        string device = ProtocolFixture.DeviceId;

        Assert.Equal(RejectReason.Oversized, reassembler.Accept(device, ChunkFrame(id, 0, 2, 2L << 20, new byte[1 << 20])).Reason);
        Assert.Equal(RejectReason.Malformed, reassembler.Accept(device, ChunkFrame(id, 2, 2, 100, new byte[50])).Reason);
        Assert.Equal(RejectReason.Malformed, reassembler.Accept(device, ChunkFrame(id, 0, 2, 100, new byte[49])).Reason);
        Assert.Equal(RejectReason.Malformed, reassembler.Accept(device, ChunkFrame(id[..8], 0, 2, 100, new byte[50])).Reason);

        Assert.Equal(FrameOutcome.Pending, reassembler.Accept(device, ChunkFrame(id, 0, 2, 100, new byte[50])).Outcome);
        Assert.Equal(RejectReason.Inconsistent, reassembler.Accept(device, ChunkFrame(id, 1, 2, 100, new byte[50], sha: Enumerable.Repeat((byte)1, 32).ToArray())).Reason);
        Assert.Equal(RejectReason.Inconsistent, reassembler.Accept(device, ChunkFrame(id, 1, 4, 100, new byte[25])).Reason);

        // Per-device limit, then the global budget.
        Assert.Equal(FrameOutcome.Pending, reassembler.Accept(device, ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 2, 1 << 20, new byte[1 << 19])).Outcome);
        Assert.Equal(RejectReason.Busy, reassembler.Accept(device, ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 2, 100, new byte[50])).Reason);
        Assert.Equal(FrameOutcome.Pending, reassembler.Accept("pi-0002", ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 2, 1 << 20, new byte[1 << 19])).Outcome);
        Assert.Equal(RejectReason.Busy, reassembler.Accept("pi-0003", ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 2, 1 << 20, new byte[1 << 19])).Reason);
        Assert.True(reassembler.PendingBytes <= options.MaxPendingBytes);

        Assert.Equal(RejectReason.Malformed, reassembler.Accept(device, new byte[] { 0x1A, 0x00 }).Reason);
        Assert.Equal(RejectReason.Malformed, reassembler.Accept(device, new byte[] { 0x0A, 0x05, 1 }).Reason);
    }

    [Fact]
    public void Chunks_of_two_devices_with_the_same_update_id_do_not_mix()
    {
        byte[] signed = _f.SignedUpdate(d: 30_000, spec: "fp32");
        IReadOnlyList<byte[]> frames = UpdateFramer.Frame(signed, IdOf(signed), maxFrameBytes: 32 << 10);
        var reassembler = new UpdateReassembler(new ReassemblyOptions());
        for (int i = 0; i < frames.Count - 1; i++)
        {
            reassembler.Accept(ProtocolFixture.DeviceId, frames[i]);
        }
        Assert.Equal(FrameOutcome.Pending, reassembler.Accept("intruder", frames[^1]).Outcome);
        Assert.Equal(FrameOutcome.Complete, reassembler.Accept(ProtocolFixture.DeviceId, frames[^1]).Outcome);
    }
}
