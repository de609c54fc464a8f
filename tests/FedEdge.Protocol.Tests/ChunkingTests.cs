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
        // Once settled for good, a redelivery is recognised and allocates nothing.
        reassembler.Settle(ProtocolFixture.DeviceId, last.UpdateId!, final: true);
        Assert.Equal(FrameOutcome.Duplicate, reassembler.Accept(ProtocolFixture.DeviceId, frames[1]).Outcome);
        Assert.Equal(0, reassembler.PendingCount);
    }

    [Fact]
    public void Missing_chunks_expire_and_free_their_memory()
    {
        var time = new ManualTime(DateTimeOffset.UnixEpoch);
        byte[] signed = _f.SignedUpdate(d: 100_000, spec: "fp32");
        IReadOnlyList<byte[]> frames = UpdateFramer.Frame(signed, IdOf(signed), maxFrameBytes: 64 << 10);
        var expired = new List<string>();
        var reassembler = new UpdateReassembler(new ReassemblyOptions { Timeout = TimeSpan.FromSeconds(30) }, time)
        {
            Dropped = (_, id) => expired.Add(id),
        };
        foreach (byte[] frame in frames.Skip(1))
        {
            Assert.Equal(FrameOutcome.Pending, reassembler.Accept(ProtocolFixture.DeviceId, frame).Outcome);
        }
        Assert.Equal(1, reassembler.PendingCount);
        // Charged as data arrived: what the chunks carried and a slot per chunk, not the announced total.
        Assert.Equal(signed.Length - UpdateFrame.Parser.ParseFrom(frames[0]).Chunk.Data.Length + (frames.Count * UpdateReassembler.SlotBytes), reassembler.PendingBytes);
        time.Now += TimeSpan.FromSeconds(31);
        Assert.Equal(1, reassembler.RemoveExpired());
        Assert.Equal(0, reassembler.PendingBytes);
        Assert.Equal([Convert.ToHexString(IdOf(signed))], expired);
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

        // Per-device limit on the number of incomplete updates.
        Assert.Equal(FrameOutcome.Pending, reassembler.Accept(device, ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 2, 1 << 20, new byte[1 << 19])).Outcome);
        Assert.Equal(RejectReason.Busy, reassembler.Accept(device, ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 2, 100, new byte[50])).Reason);
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

    private static byte[] Sha(byte[] data) => SHA256.HashData(data);

    /// <summary>Frames of an arbitrary envelope-sized blob cut into <paramref name="count"/> chunks (the reassembler only
    /// checks sizes and the hash).</summary>
    private static byte[][] Frames(byte[] id, byte[] whole, int count)
    {
        int size = UpdateReassembler.ChunkSize(whole.Length, count);
        return [.. Enumerable.Range(0, count).Select(i => ChunkFrame(id, i, count, whole.Length,
            whole.AsSpan(i * size, Math.Min(size, whole.Length - (i * size))).ToArray(), Sha(whole)))];
    }

    [Fact]
    public void A_first_chunk_announcing_a_huge_update_reserves_nothing_and_the_announced_size_is_capped_by_the_caller()
    {
        var reassembler = new UpdateReassembler(new ReassemblyOptions { MaxEnvelopeBytes = 64 << 20, MaxPendingBytes = 1 << 20 });
        // 64 MiB announced in 16,384 chunks of 4 KiB: before, the whole 64 MiB was allocated and charged on arrival.
        Assert.Equal(FrameOutcome.Pending, reassembler.Accept("bomber", ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 16_384, 64 << 20, new byte[4096])).Outcome);
        Assert.Equal(4096 + (16_384 * UpdateReassembler.SlotBytes), reassembler.PendingBytes);
        // With the model's limit (what its codecs can produce) the same announcement is refused outright.
        FrameResult capped = reassembler.Accept("bomber", ChunkFrame(RandomNumberGenerator.GetBytes(16), 0, 16_384, 64 << 20, new byte[4096]), maxEnvelopeBytes: 1 << 20);
        Assert.Equal(RejectReason.Oversized, capped.Reason);
        Assert.False(capped.IsRetryable);
    }

    [Fact]
    public void A_device_over_its_share_is_refused_retryably_and_the_others_are_not_affected()
    {
        var reassembler = new UpdateReassembler(new ReassemblyOptions { MaxPendingBytes = 1 << 20, MaxPendingBytesPerDevice = 64 << 10, MaxPendingPerDevice = 2 });
        byte[] big = RandomNumberGenerator.GetBytes(128 << 10);
        byte[][] hog = Frames(RandomNumberGenerator.GetBytes(16), big, 32);
        int taken = 0;
        FrameResult refused = default;
        foreach (byte[] frame in hog)
        {
            refused = reassembler.Accept("hog", frame);
            if (refused.Outcome != FrameOutcome.Pending) break;
            taken++;
        }
        Assert.True(refused.IsRetryable, refused.Message);
        Assert.Contains("share", refused.Message);
        Assert.InRange(reassembler.PendingBytesOf("hog"), 60 << 10, 64 << 10);

        byte[] honest = RandomNumberGenerator.GetBytes(48 << 10);
        FrameResult last = default;
        foreach (byte[] frame in Frames(RandomNumberGenerator.GetBytes(16), honest, 12))
            last = reassembler.Accept("honest", frame);
        Assert.Equal(FrameOutcome.Complete, last.Outcome);
        Assert.Equal(honest, last.Envelope.ToArray());
    }

    [Fact]
    public void When_the_budget_is_spent_the_largest_holder_gives_way_to_a_device_holding_less()
    {
        // Four hogs at their full share fill the budget; an honest device's update still completes.
        var dropped = new List<string>();
        var reassembler = new UpdateReassembler(new ReassemblyOptions { MaxPendingBytes = 200 << 10, MaxPendingBytesPerDevice = 64 << 10 })
        {
            Dropped = (device, _) => dropped.Add(device),
        };
        foreach (string hog in new[] { "hog-1", "hog-2", "hog-3", "hog-4" })
        {
            foreach (byte[] frame in Frames(RandomNumberGenerator.GetBytes(16), RandomNumberGenerator.GetBytes(60 << 10), 15).SkipLast(1))
                Assert.NotEqual(FrameOutcome.Rejected, reassembler.Accept(hog, frame).Outcome);
        }
        Assert.True(reassembler.PendingBytes <= 200 << 10);
        Assert.True(reassembler.EvictedCount >= 1, "the fourth hog only fits by pushing out another");
        long evictedByHogs = reassembler.EvictedCount;

        byte[] honest = RandomNumberGenerator.GetBytes(48 << 10);
        FrameResult last = default;
        foreach (byte[] frame in Frames(RandomNumberGenerator.GetBytes(16), honest, 12))
        {
            last = reassembler.Accept("honest", frame);
            Assert.NotEqual(FrameOutcome.Rejected, last.Outcome);
        }
        Assert.Equal(FrameOutcome.Complete, last.Outcome);
        Assert.True(reassembler.EvictedCount > evictedByHogs);
        Assert.True(reassembler.PendingBytes <= 200 << 10);
        // Whoever keeps copies of held chunks hears of every eviction, and only hogs were evicted.
        Assert.Equal(reassembler.EvictedCount, dropped.Count);
        Assert.All(dropped, device => Assert.StartsWith("hog-", device));
    }

    [Fact]
    public void An_update_whose_processing_failed_is_reassembled_again_and_only_a_settled_one_is_a_duplicate()
    {
        byte[] whole = RandomNumberGenerator.GetBytes(10_000);
        byte[][] frames = Frames(RandomNumberGenerator.GetBytes(16), whole, 8);
        var reassembler = new UpdateReassembler(new ReassemblyOptions());
        FrameResult last = default;
        foreach (byte[] frame in frames) last = reassembler.Accept("dev", frame);
        Assert.Equal(FrameOutcome.Complete, last.Outcome);
        Assert.True(last.IsLastIndex);
        // While it is being processed, a redelivered chunk is a duplicate of a settled update.
        Assert.True(reassembler.Accept("dev", frames[3]).IsSettled);
        // Storage failed: not settled for good, so every chunk sent again is reassembled and processed again.
        reassembler.Settle("dev", last.UpdateId!, final: false);
        for (int i = 0; i < frames.Length - 1; i++)
        {
            FrameResult again = reassembler.Accept("dev", frames[i]);
            Assert.Equal(FrameOutcome.Pending, again.Outcome);
            Assert.True(again.IsIncomplete);
        }
        // A chunk received twice while incomplete is still incomplete (not "done").
        Assert.True(reassembler.Accept("dev", frames[0]).IsIncomplete);
        last = reassembler.Accept("dev", frames[^1]);
        Assert.Equal(FrameOutcome.Complete, last.Outcome);
        Assert.Equal(whole, last.Envelope.ToArray());
        reassembler.Settle("dev", last.UpdateId!, final: true);
        FrameResult late = reassembler.Accept("dev", frames[^1]);
        Assert.Equal(FrameOutcome.Duplicate, late.Outcome);
        Assert.False(late.IsIncomplete);
    }
}
