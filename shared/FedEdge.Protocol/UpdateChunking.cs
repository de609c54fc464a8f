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
    /// <summary>Largest envelope that may be reassembled (a caller may pass a tighter, per-federation limit to
    /// <see cref="UpdateReassembler.Accept"/>).</summary>
    public int MaxEnvelopeBytes { get; init; } = 64 << 20;

    /// <summary>Bytes of all incomplete envelopes together (chunk data received so far, plus 8 bytes per announced chunk).</summary>
    public long MaxPendingBytes { get; init; } = 512L << 20;

    /// <summary>Bytes one device's incomplete envelopes may hold: its share of <see cref="MaxPendingBytes"/>.</summary>
    public long MaxPendingBytesPerDevice { get; init; } = 128L << 20;

    /// <summary>Incomplete envelopes one device may have at once.</summary>
    public int MaxPendingPerDevice { get; init; } = 2;

    public int MaxChunkCount { get; init; } = 1 << 16;

    /// <summary>An incomplete envelope is dropped once no chunk of it arrived for this long.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(2);
}

public enum FrameOutcome
{
    /// <summary><see cref="FrameResult.Envelope"/> holds complete signed envelope bytes (not yet verified). For a chunked
    /// envelope the caller must call <see cref="UpdateReassembler.Settle"/> once it knows the outcome.</summary>
    Complete,
    /// <summary>A chunk was stored; more are needed.</summary>
    Pending,
    /// <summary>A chunk already received (MQTT QoS 1 redelivery), or one of an update already settled for good; ignored.</summary>
    Duplicate,
    Rejected,
}

/// <param name="UpdateId">Hex of a chunk's update id (null for a whole envelope or a frame that could not be read).</param>
/// <param name="IsLastIndex">The chunk is the last one by index: a device sends chunks in order, so when this one does not
/// complete the envelope (earlier chunks expired, were evicted or refused) the device must send the update again.</param>
/// <param name="IsSettled">A <see cref="FrameOutcome.Duplicate"/> of an update that completed (settled for good, or being
/// processed), as opposed to a chunk received twice of an update still incomplete.</param>
public readonly record struct FrameResult(FrameOutcome Outcome, ReadOnlyMemory<byte> Envelope, RejectReason Reason, string? Message,
    string? UpdateId = null, bool IsLastIndex = false, bool IsSettled = false)
{
    public static FrameResult Rejected(RejectReason reason, string message) => new(FrameOutcome.Rejected, default, reason, message);

    /// <summary>Whether the refusal is temporary (<see cref="RejectReason.Busy"/>): sending the same frames later may succeed.</summary>
    public bool IsRetryable => Outcome == FrameOutcome.Rejected && Reason == RejectReason.Busy;

    /// <summary>A chunk held (or held already) of an update that still misses chunks.</summary>
    public bool IsIncomplete => Outcome == FrameOutcome.Pending || (Outcome == FrameOutcome.Duplicate && !IsSettled);
}

/// <summary>
/// Cloud side: turns <c>UpdateFrame</c>s from a device's update topic into signed envelope bytes for
/// <see cref="UpdateEnvelopeVerifier"/>. Chunks may arrive in any order and more than once; an
/// envelope completes when all chunks are in and the SHA-256 of the whole matches. Thread-safe.
/// <para>Memory is charged as data arrives, never by what a first chunk announces: the announced size only has to fit
/// the limit. Each device has a share (<see cref="ReassemblyOptions.MaxPendingBytesPerDevice"/>, at most
/// <see cref="ReassemblyOptions.MaxPendingPerDevice"/> updates); a device over it is refused (<see cref="RejectReason.Busy"/>)
/// and nobody else is affected. When the total budget is spent, the device holding the most gives way (its oldest
/// incomplete update is dropped) if it holds more than the device asking, so that a few devices cannot starve the others.</para>
/// <para>A completed update id is remembered (late redeliveries answered <see cref="FrameOutcome.Duplicate"/>) only once
/// the caller <see cref="Settle">settles</see> it for good, i.e. after it was stored or refused for good; an update whose
/// processing failed is forgotten, and the device's next complete sending of it is reassembled again.</para>
/// </summary>
public sealed class UpdateReassembler(ReassemblyOptions options, TimeProvider? time = null)
{
    /// <summary>Bytes charged per announced chunk for its slot.</summary>
    public const int SlotBytes = 8;

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Dictionary<(string Device, string UpdateId), Pending> _pending = [];
    private readonly Dictionary<string, DeviceShare> _devices = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly HashSet<(string Device, string UpdateId)> _completing = [];
    private readonly HashSet<(string Device, string UpdateId)> _completed = [];
    private readonly Queue<(string Device, string UpdateId)> _completedOrder = new();
    private long _pendingBytes;
    private long _evicted;

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

    /// <summary>Called with (device, update id) after an incomplete update was dropped (expired, or evicted to make room),
    /// outside the reassembler's lock: a receiver that keeps copies of held chunks deletes them.</summary>
    public Action<string, string>? Dropped { get; init; }

    /// <summary>Incomplete updates dropped to make room for a device holding less (see the class remarks).</summary>
    public long EvictedCount => Interlocked.Read(ref _evicted);

    /// <summary>Bytes the device's incomplete updates hold now.</summary>
    public long PendingBytesOf(string deviceId)
    {
        lock (_lock)
        {
            return _devices.TryGetValue(deviceId, out DeviceShare? share) ? share.Bytes : 0;
        }
    }

    /// <summary>Size of every chunk but the last: ⌈total/count⌉.</summary>
    public static int ChunkSize(long total, int count) => (int)((total + count - 1) / count);

    /// <param name="deviceId">The device the broker authenticated (from the topic).</param>
    /// <param name="frame">One MQTT payload from the device's update topic.</param>
    /// <param name="maxEnvelopeBytes">A tighter limit than <see cref="ReassemblyOptions.MaxEnvelopeBytes"/> for this
    /// frame's envelope (the largest a federation's model and codecs can produce), or null.</param>
    public FrameResult Accept(string deviceId, ReadOnlyMemory<byte> frame, int? maxEnvelopeBytes = null)
    {
        RemoveExpired();
        int limit = Math.Min(options.MaxEnvelopeBytes, maxEnvelopeBytes ?? int.MaxValue);
        if (frame.Length > (long)limit + 16)
        {
            return FrameResult.Rejected(RejectReason.Oversized, $"Frame of {frame.Length} bytes from '{deviceId}' exceeds the limit of {limit}.");
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
        return AcceptChunk(deviceId, chunk, limit);
    }

    private FrameResult AcceptChunk(string deviceId, UpdateChunk chunk, int limit)
    {
        if (chunk.UpdateId.Length != UpdateEnvelopeVerifier.UpdateIdLength || chunk.TotalSha256.Length != 32)
        {
            return FrameResult.Rejected(RejectReason.Malformed, $"Chunk from '{deviceId}' lacks a 16-byte update id or a 32-byte SHA-256.");
        }
        if (chunk.TotalSize > limit || chunk.Count > options.MaxChunkCount)
        {
            return FrameResult.Rejected(RejectReason.Oversized, $"Chunk from '{deviceId}' announces {chunk.TotalSize} bytes in {chunk.Count} chunks; limits are {limit} and {options.MaxChunkCount}.");
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

        string updateId = Convert.ToHexString(chunk.UpdateId.Span);
        bool last = chunk.Index == chunk.Count - 1;
        var key = (deviceId, updateId);
        List<(string Device, string UpdateId)>? evicted = null;
        try
        {
            return AcceptChunkLocked(key, chunk, total, start, last, ref evicted);
        }
        finally
        {
            if (evicted is not null && Dropped is { } dropped)
            {
                foreach (var (device, id) in evicted)
                {
                    dropped(device, id);
                }
            }
        }
    }

    private FrameResult AcceptChunkLocked((string Device, string UpdateId) key, UpdateChunk chunk, int total, int start, bool last,
        ref List<(string Device, string UpdateId)>? evicted)
    {
        var (deviceId, updateId) = key;
        lock (_lock)
        {
            if (_completed.Contains(key) || _completing.Contains(key))
            {
                return new FrameResult(FrameOutcome.Duplicate, default, RejectReason.None, null, updateId, last, IsSettled: true);
            }
            _devices.TryGetValue(deviceId, out DeviceShare? share);
            bool isNew = !_pending.TryGetValue(key, out Pending? pending);
            if (pending is not null
                && (pending.Total != total || pending.Chunks.Length != chunk.Count || !chunk.TotalSha256.Span.SequenceEqual(pending.Sha256)))
            {
                return FrameResult.Rejected(RejectReason.Inconsistent, $"Chunk {chunk.Index} of update {updateId} from '{deviceId}' disagrees with earlier chunks on size, count or hash.");
            }
            if (pending is not null && pending.Chunks[chunk.Index] is not null)
            {
                return new FrameResult(FrameOutcome.Duplicate, default, RejectReason.None, null, updateId, last);
            }
            if (isNew && share is { Count: var count } && count >= options.MaxPendingPerDevice)
            {
                return FrameResult.Rejected(RejectReason.Busy, $"Device '{deviceId}' already has {count} incomplete updates.");
            }
            long charge = chunk.Data.Length + (isNew ? (long)chunk.Count * SlotBytes : 0);
            long held = share?.Bytes ?? 0;
            if (held + charge > options.MaxPendingBytesPerDevice)
            {
                return FrameResult.Rejected(RejectReason.Busy, $"Device '{deviceId}' holds {held} bytes of incomplete updates; {charge} more would exceed its share of {options.MaxPendingBytesPerDevice}.");
            }
            while (_pendingBytes + charge > options.MaxPendingBytes)
            {
                if (EvictFromLargestHolder(deviceId, held + charge) is not { } dropped)
                {
                    return FrameResult.Rejected(RejectReason.Busy, $"Reassembly budget of {options.MaxPendingBytes} bytes is exhausted.");
                }
                (evicted ??= []).Add(dropped);
            }

            DateTimeOffset now = _time.GetUtcNow();
            if (pending is null)
            {
                pending = new Pending(total, chunk.Count, chunk.TotalSha256.ToByteArray(), now);
                _pending[key] = pending;
                if (share is null)
                {
                    _devices[deviceId] = share = new DeviceShare();
                }
                share.Count++;
            }
            // The ByteString already is the parser's copy of the data: kept as is, no second copy until completion.
            pending.Chunks[chunk.Index] = chunk.Data;
            pending.ReceivedCount++;
            pending.Charged += charge;
            pending.LastChunk = now;
            share!.Bytes += charge;
            _pendingBytes += charge;
            if (pending.ReceivedCount < chunk.Count)
            {
                return new FrameResult(FrameOutcome.Pending, default, RejectReason.None, null, updateId, last);
            }
            Remove(key, pending);
            byte[] envelope = new byte[total];
            int offset = 0;
            foreach (ByteString? data in pending.Chunks)
            {
                data!.Span.CopyTo(envelope.AsSpan(offset));
                offset += data.Length;
            }
            Span<byte> actual = stackalloc byte[32];
            SHA256.HashData(envelope, actual);
            if (actual.SequenceEqual(pending.Sha256))
            {
                _completing.Add(key);
                return new FrameResult(FrameOutcome.Complete, envelope, RejectReason.None, null, updateId, last);
            }
            return FrameResult.Rejected(RejectReason.HashMismatch, $"Update {updateId} from '{deviceId}': reassembled bytes do not match the SHA-256.");
        }
    }

    /// <summary>
    /// Ends the processing of a chunked envelope returned as <see cref="FrameOutcome.Complete"/>. With
    /// <paramref name="final"/> (stored, or refused for good) its id is remembered and later chunks of it are duplicates;
    /// otherwise (the cloud could not process it now) it is forgotten, so that the device's next sending of every chunk
    /// is reassembled and processed again.
    /// </summary>
    public void Settle(string deviceId, string updateId, bool final)
    {
        var key = (deviceId, updateId);
        lock (_lock)
        {
            _completing.Remove(key);
            if (final)
            {
                RememberCompleted(key);
            }
        }
    }

    /// <summary>Drops the oldest incomplete update of the device holding the most, if it holds more than
    /// <paramref name="wanted"/> (what the asking device would hold); returns the one dropped, if any.</summary>
    private (string Device, string UpdateId)? EvictFromLargestHolder(string askingDevice, long wanted)
    {
        string? largest = null;
        long most = wanted;
        foreach (var (device, share) in _devices)
        {
            if (share.Bytes > most && device != askingDevice)
            {
                (largest, most) = (device, share.Bytes);
            }
        }
        if (largest is null)
        {
            return null;
        }
        var oldest = _pending.Where(p => p.Key.Device == largest).MinBy(p => p.Value.Created);
        Remove(oldest.Key, oldest.Value);
        Interlocked.Increment(ref _evicted);
        return oldest.Key;
    }

    /// <summary>Drops an incomplete update (its chunks could not be kept where the receiver keeps them); no-op if absent.</summary>
    public void Forget(string deviceId, string updateId)
    {
        lock (_lock)
        {
            if (_pending.TryGetValue((deviceId, updateId), out Pending? pending))
            {
                Remove((deviceId, updateId), pending);
            }
        }
    }

    private void Remove((string Device, string UpdateId) key, Pending pending)
    {
        _pending.Remove(key);
        _pendingBytes -= pending.Charged;
        DeviceShare share = _devices[key.Device];
        share.Bytes -= pending.Charged;
        if (--share.Count == 0)
        {
            _devices.Remove(key.Device);
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

    /// <summary>Drops incomplete envelopes that received no chunk for <see cref="ReassemblyOptions.Timeout"/>; returns how many.</summary>
    public int RemoveExpired()
    {
        DateTimeOffset cutoff = _time.GetUtcNow() - options.Timeout;
        List<(string Device, string UpdateId)>? expired = null;
        lock (_lock)
        {
            foreach (var (key, pending) in _pending)
            {
                if (pending.LastChunk <= cutoff)
                {
                    (expired ??= []).Add(key);
                }
            }
            if (expired is null)
            {
                return 0;
            }
            foreach (var key in expired)
            {
                Remove(key, _pending[key]);
            }
        }
        if (Dropped is { } dropped)
        {
            foreach (var (device, id) in expired)
            {
                dropped(device, id);
            }
        }
        return expired.Count;
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

    private sealed class Pending(int total, int count, byte[] sha256, DateTimeOffset created)
    {
        public int Total { get; } = total;

        /// <summary>The chunks' data by index; null where not received yet.</summary>
        public ByteString?[] Chunks { get; } = new ByteString?[count];

        public int ReceivedCount { get; set; }

        /// <summary>Bytes charged to the budget for this update so far.</summary>
        public long Charged { get; set; }

        public byte[] Sha256 { get; } = sha256;

        public DateTimeOffset Created { get; } = created;

        public DateTimeOffset LastChunk { get; set; } = created;
    }

    private sealed class DeviceShare
    {
        public long Bytes { get; set; }

        public int Count { get; set; }
    }
}
