using System.Security.Cryptography;
using FedEdge.Compression;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol;

/// <summary>
/// Device side: wraps a signed envelope into <c>UpdateFrame</c> messages for the device's update topic.
/// Envelopes up to <c>maxFrameBytes</c> travel whole; larger ones are cut into <c>UpdateChunk</c>s of
/// ⌈size/count⌉ bytes (the last one shorter), each carrying the SHA-256 of the whole envelope.
/// </summary>
public static class UpdateFramer
{
    public const int DefaultMaxFrameBytes = 256 << 10;

    /// <summary>Bytes a frame adds around a chunk's data (generous upper bound).</summary>
    private const int ChunkOverhead = 96;

    public static IReadOnlyList<byte[]> Frame(ReadOnlySpan<byte> signedEnvelope, ReadOnlySpan<byte> updateId, int maxFrameBytes = DefaultMaxFrameBytes)
    {
        if (maxFrameBytes < ChunkOverhead * 2)
        {
            throw new ArgumentOutOfRangeException(nameof(maxFrameBytes), maxFrameBytes, $"Frames must allow at least {ChunkOverhead * 2} bytes.");
        }
        if (signedEnvelope.Length + 6 <= maxFrameBytes)
        {
            // UpdateFrame{ envelope = 1 }: tag 0x0A, length, the signed bytes untouched.
            byte[] frame = new byte[1 + Varint.Length((ulong)signedEnvelope.Length) + signedEnvelope.Length];
            frame[0] = 0x0A;
            int offset = 1 + Varint.Write(frame.AsSpan(1), (ulong)signedEnvelope.Length);
            signedEnvelope.CopyTo(frame.AsSpan(offset));
            return [frame];
        }
        if (updateId.Length != UpdateEnvelopeVerifier.UpdateIdLength)
        {
            throw new ArgumentException($"The update id has {updateId.Length} bytes, not {UpdateEnvelopeVerifier.UpdateIdLength}.", nameof(updateId));
        }
        int chunkData = maxFrameBytes - ChunkOverhead;
        int count = (signedEnvelope.Length + chunkData - 1) / chunkData;
        int chunkSize = UpdateReassembler.ChunkSize(signedEnvelope.Length, count);
        ByteString id = ByteString.CopyFrom(updateId);
        ByteString sha = ByteString.CopyFrom(SHA256.HashData(signedEnvelope));
        var frames = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            int start = i * chunkSize;
            int length = Math.Min(chunkSize, signedEnvelope.Length - start);
            var chunk = new UpdateChunk
            {
                UpdateId = id,
                Index = i,
                Count = count,
                TotalSize = signedEnvelope.Length,
                TotalSha256 = sha,
                Data = ByteString.CopyFrom(signedEnvelope.Slice(start, length)),
            };
            frames[i] = new UpdateFrame { Chunk = chunk }.ToByteArray();
        }
        return frames;
    }
}

/// <summary>Limits of <see cref="UpdateReassembler"/>: they bound its memory whatever devices send.</summary>
public sealed class ReassemblyOptions
{
    /// <summary>Largest envelope that may be reassembled.</summary>
    public int MaxEnvelopeBytes { get; init; } = 64 << 20;

    /// <summary>Bytes of all incomplete envelopes together.</summary>
    public long MaxPendingBytes { get; init; } = 512L << 20;

    /// <summary>Incomplete envelopes one device may have at once.</summary>
    public int MaxPendingPerDevice { get; init; } = 2;

    public int MaxChunkCount { get; init; } = 1 << 16;

    /// <summary>An incomplete envelope is dropped this long after its first chunk.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(2);
}

public enum FrameOutcome
{
    /// <summary><see cref="FrameResult.Envelope"/> holds complete signed envelope bytes (not yet verified).</summary>
    Complete,
    /// <summary>A chunk was stored; more are needed.</summary>
    Pending,
    /// <summary>A chunk already received (MQTT QoS 1 redelivery); ignored.</summary>
    Duplicate,
    Rejected,
}

public readonly record struct FrameResult(FrameOutcome Outcome, ReadOnlyMemory<byte> Envelope, RejectReason Reason, string? Message)
{
    public static FrameResult Rejected(RejectReason reason, string message) => new(FrameOutcome.Rejected, default, reason, message);
}

/// <summary>
/// Cloud side: turns <c>UpdateFrame</c>s from a device's update topic into signed envelope bytes for
/// <see cref="UpdateEnvelopeVerifier"/>. Chunks may arrive in any order and more than once; an
/// envelope completes when all chunks are in and the SHA-256 of the whole matches. Memory is bounded
/// by <see cref="ReassemblyOptions"/>; incomplete envelopes expire. Thread-safe.
/// </summary>
public sealed class UpdateReassembler(ReassemblyOptions options, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Dictionary<(string Device, string UpdateId), Pending> _pending = [];
    private readonly Lock _lock = new();
    private readonly HashSet<(string Device, string UpdateId)> _completed = [];
    private readonly Queue<(string Device, string UpdateId)> _completedOrder = new();
    private long _pendingBytes;

    /// <summary>How many finished (device, update id) pairs are remembered to recognise late redeliveries.</summary>
    public const int CompletedMemory = 4096;

    public int PendingCount
    {
        get
        {
            lock (_lock)
            {
                return _pending.Count;
            }
        }
    }

    public long PendingBytes => Interlocked.Read(ref _pendingBytes);

    /// <summary>Size of every chunk but the last: ⌈total/count⌉.</summary>
    public static int ChunkSize(long total, int count) => (int)((total + count - 1) / count);

    /// <param name="deviceId">The device the broker authenticated (from the topic).</param>
    /// <param name="frame">One MQTT payload from the device's update topic.</param>
    public FrameResult Accept(string deviceId, ReadOnlyMemory<byte> frame)
    {
        RemoveExpired();
        if (frame.Length > options.MaxEnvelopeBytes + 16)
        {
            return FrameResult.Rejected(RejectReason.Oversized, $"Frame of {frame.Length} bytes from '{deviceId}' exceeds the limit.");
        }
        if (!TryReadFrame(frame, out int field, out ReadOnlyMemory<byte> body, out string? error))
        {
            return FrameResult.Rejected(RejectReason.Malformed, $"Frame from '{deviceId}': {error}");
        }
        if (field == 1)
        {
            return new FrameResult(FrameOutcome.Complete, body, RejectReason.None, null);
        }
        UpdateChunk chunk;
        try
        {
            chunk = UpdateChunk.Parser.ParseFrom(body.Span);
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or ArgumentException or InvalidOperationException)
        {
            return FrameResult.Rejected(RejectReason.Malformed, $"Chunk from '{deviceId}': {e.Message}");
        }
        return AcceptChunk(deviceId, chunk);
    }

    private FrameResult AcceptChunk(string deviceId, UpdateChunk chunk)
    {
        if (chunk.UpdateId.Length != UpdateEnvelopeVerifier.UpdateIdLength || chunk.TotalSha256.Length != 32)
        {
            return FrameResult.Rejected(RejectReason.Malformed, $"Chunk from '{deviceId}' lacks a 16-byte update id or a 32-byte SHA-256.");
        }
        if (chunk.TotalSize > options.MaxEnvelopeBytes || chunk.Count > options.MaxChunkCount)
        {
            return FrameResult.Rejected(RejectReason.Oversized, $"Chunk from '{deviceId}' announces {chunk.TotalSize} bytes in {chunk.Count} chunks; limits are {options.MaxEnvelopeBytes} and {options.MaxChunkCount}.");
        }
        if (chunk.Count < 1 || chunk.TotalSize < chunk.Count || chunk.Index < 0 || chunk.Index >= chunk.Count)
        {
            return FrameResult.Rejected(RejectReason.Malformed, $"Chunk from '{deviceId}' has index {chunk.Index} of {chunk.Count} for {chunk.TotalSize} bytes.");
        }
        int total = (int)chunk.TotalSize;
        int chunkSize = ChunkSize(total, chunk.Count);
        int start = chunk.Index * chunkSize;
        int expectedLength = Math.Min(chunkSize, total - start);
        if (expectedLength <= 0 || chunk.Data.Length != expectedLength)
        {
            return FrameResult.Rejected(RejectReason.Malformed, $"Chunk {chunk.Index}/{chunk.Count} from '{deviceId}' has {chunk.Data.Length} bytes, expected {expectedLength}.");
        }

        var key = (deviceId, Convert.ToHexString(chunk.UpdateId.Span));
        lock (_lock)
        {
            if (_completed.Contains(key))
            {
                return new FrameResult(FrameOutcome.Duplicate, default, RejectReason.None, null);
            }
            if (!_pending.TryGetValue(key, out Pending? pending))
            {
                int perDevice = _pending.Keys.Count(k => k.Device == deviceId);
                if (perDevice >= options.MaxPendingPerDevice)
                {
                    return FrameResult.Rejected(RejectReason.Busy, $"Device '{deviceId}' already has {perDevice} incomplete updates.");
                }
                if (_pendingBytes + total > options.MaxPendingBytes)
                {
                    return FrameResult.Rejected(RejectReason.Busy, $"Reassembly budget of {options.MaxPendingBytes} bytes is exhausted.");
                }
                pending = new Pending(total, chunk.Count, chunk.TotalSha256.ToByteArray(), _time.GetUtcNow() + options.Timeout);
                _pending[key] = pending;
                _pendingBytes += total;
            }
            else if (pending.Total != total || pending.Received.Length != chunk.Count || !chunk.TotalSha256.Span.SequenceEqual(pending.Sha256))
            {
                return FrameResult.Rejected(RejectReason.Inconsistent, $"Chunk {chunk.Index} of update {key.Item2} from '{deviceId}' disagrees with earlier chunks on size, count or hash.");
            }
            if (pending.Received[chunk.Index])
            {
                return new FrameResult(FrameOutcome.Duplicate, default, RejectReason.None, null);
            }
            chunk.Data.Span.CopyTo(pending.Buffer.AsSpan(start));
            pending.Received[chunk.Index] = true;
            if (++pending.ReceivedCount < chunk.Count)
            {
                return new FrameResult(FrameOutcome.Pending, default, RejectReason.None, null);
            }
            _pending.Remove(key);
            _pendingBytes -= total;
            Span<byte> actual = stackalloc byte[32];
            SHA256.HashData(pending.Buffer, actual);
            if (actual.SequenceEqual(pending.Sha256))
            {
                RememberCompleted(key);
                return new FrameResult(FrameOutcome.Complete, pending.Buffer, RejectReason.None, null);
            }
            return FrameResult.Rejected(RejectReason.HashMismatch, $"Update {key.Item2} from '{deviceId}': reassembled bytes do not match the SHA-256.");
        }
    }

    private void RememberCompleted((string Device, string UpdateId) key)
    {
        if (_completed.Add(key))
        {
            _completedOrder.Enqueue(key);
            if (_completedOrder.Count > CompletedMemory)
            {
                _completed.Remove(_completedOrder.Dequeue());
            }
        }
    }

    /// <summary>Drops incomplete envelopes past their deadline; returns how many.</summary>
    public int RemoveExpired()
    {
        DateTimeOffset now = _time.GetUtcNow();
        lock (_lock)
        {
            int removed = 0;
            foreach (var (key, pending) in _pending.Where(p => p.Value.Deadline <= now).ToList())
            {
                _pending.Remove(key);
                _pendingBytes -= pending.Total;
                removed++;
            }
            return removed;
        }
    }

    /// <summary>Reads the single top-level record of an UpdateFrame: field 1 (envelope) or 2 (chunk).</summary>
    private static bool TryReadFrame(ReadOnlyMemory<byte> frame, out int field, out ReadOnlyMemory<byte> body, out string? error)
    {
        field = 0;
        body = default;
        ReadOnlySpan<byte> span = frame.Span;
        if (span.IsEmpty || (span[0] != 0x0A && span[0] != 0x12))
        {
            error = "not an UpdateFrame (expected field 1 or 2).";
            return false;
        }
        if (!Varint.TryRead(span[1..], out ulong length, out int n) || length != (ulong)(span.Length - 1 - n))
        {
            error = "the frame's length prefix does not match its size.";
            return false;
        }
        field = span[0] >> 3;
        body = frame[(1 + n)..];
        error = null;
        return true;
    }

    private sealed class Pending(int total, int count, byte[] sha256, DateTimeOffset deadline)
    {
        public int Total { get; } = total;

        public byte[] Buffer { get; } = new byte[total];

        public bool[] Received { get; } = new bool[count];

        public int ReceivedCount { get; set; }

        public byte[] Sha256 { get; } = sha256;

        public DateTimeOffset Deadline { get; } = deadline;
    }
}
