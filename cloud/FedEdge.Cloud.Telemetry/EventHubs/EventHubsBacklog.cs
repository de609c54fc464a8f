using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>
/// The durable, bounded queue of events not yet confirmed by the hub: an append-only log in segment files
/// (<c>{offset:D20}.seg</c>, named by the logical offset of their first byte) and an acknowledgement cursor
/// (<c>ack</c>, the logical offset up to which the hub confirmed). An event is appended and flushed to disk before
/// <see cref="TryAppend"/> returns true; the cursor moves only after the SDK confirmed the send, so a crash or a
/// restart loses nothing accepted (what was sent but not yet acknowledged is sent again: at least once).
/// Each record is <c>[length u32][crc32 u32][payload]</c>; a torn or corrupt tail (a crash mid-write) is cut off
/// when the backlog is opened. Bounded by bytes and by events: beyond either, <see cref="TryAppend"/> refuses.
/// Whole segments behind the cursor are deleted. One writer at a time (appends are serialised by a lock) and one
/// reader (the sink's sender).
/// </summary>
public sealed class EventHubsBacklog : IDisposable
{
    private const int HeaderBytes = 8;
    private const byte FormatVersion = 1;
    private const string SegmentSuffix = ".seg";

    private readonly string _directory;
    private readonly long _capacityBytes;
    private readonly int _capacityEvents;
    private readonly long _segmentBytes;
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _appended = new(0, 1);
    private readonly SortedList<long, long> _segments = []; // base offset → length
    private FileStream? _writer;
    private long _writeOffset, _ackOffset;
    private int _pendingCount;

    private EventHubsBacklog(string directory, long capacityBytes, int capacityEvents, long segmentBytes)
    {
        _directory = directory;
        _capacityBytes = capacityBytes;
        _capacityEvents = capacityEvents;
        _segmentBytes = segmentBytes;
    }

    /// <summary>Bytes of records (headers included) not yet acknowledged.</summary>
    public long PendingBytes
    {
        get { lock (_gate) return _writeOffset - _ackOffset; }
    }

    /// <summary>Events not yet acknowledged.</summary>
    public int PendingCount
    {
        get { lock (_gate) return _pendingCount; }
    }

    public long CapacityBytes => _capacityBytes;

    public int CapacityEvents => _capacityEvents;

    /// <summary>Bytes one event takes in the backlog.</summary>
    public static long RecordBytes(EventHubsEvent item) => HeaderBytes + PayloadBytes(item);

    /// <summary>Opens (or creates) the backlog in <paramref name="directory"/>; recovers what a previous run left.</summary>
    public static EventHubsBacklog Open(string directory, long capacityBytes, int capacityEvents, long segmentBytes, ILogger logger)
    {
        Directory.CreateDirectory(directory);
        var backlog = new EventHubsBacklog(directory, capacityBytes, capacityEvents, segmentBytes);
        backlog.Recover(logger);
        return backlog;
    }

    /// <summary>Appends and flushes to disk; false when the event does not fit within the bounds (nothing written).</summary>
    public bool TryAppend(EventHubsEvent item)
    {
        var record = Encode(item);
        lock (_gate)
        {
            if (_writeOffset - _ackOffset + record.Length > _capacityBytes || _pendingCount >= _capacityEvents) return false;
            var writer = _writer!;
            if (writer.Length > 0 && writer.Length + record.Length > _segmentBytes)
                writer = StartSegment(_writeOffset);
            try
            {
                writer.Write(record);
                writer.Flush(flushToDisk: true);
            }
            catch (IOException)
            {
                // Leave no partial record behind the offsets we hand out.
                writer.SetLength(_writeOffset - _segments.Keys[^1]);
                throw;
            }
            _writeOffset += record.Length;
            _segments[_segments.Keys[^1]] = writer.Length;
            _pendingCount++;
        }
        if (_appended.CurrentCount == 0)
        {
            try { _appended.Release(); } catch (SemaphoreFullException) { }
        }
        return true;
    }

    /// <summary>Waits until at least one event is pending.</summary>
    public async Task WaitForPendingAsync(CancellationToken cancellationToken)
    {
        while (PendingCount == 0) await _appended.WaitAsync(cancellationToken);
    }

    /// <summary>Reads pending events from the cursor on, in append order, up to the given counts.</summary>
    public IReadOnlyList<BacklogRecord> ReadPending(int maxEvents, long maxBytes)
    {
        long from, to;
        long[] bases;
        lock (_gate)
        {
            (from, to) = (_ackOffset, _writeOffset);
            bases = [.. _segments.Keys];
        }
        var records = new List<BacklogRecord>();
        long bytes = 0;
        var header = new byte[HeaderBytes];
        for (var s = 0; s < bases.Length && from < to && records.Count < maxEvents; s++)
        {
            var segmentEnd = s + 1 < bases.Length ? bases[s + 1] : to;
            if (segmentEnd <= from) continue;
            using var file = new FileStream(SegmentPath(bases[s]), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            file.Position = from - bases[s];
            while (from < Math.Min(segmentEnd, to) && records.Count < maxEvents)
            {
                file.ReadExactly(header);
                var length = BinaryPrimitives.ReadInt32LittleEndian(header);
                if (records.Count > 0 && bytes + HeaderBytes + length > maxBytes) return records;
                var payload = new byte[length];
                file.ReadExactly(payload);
                if (Crc32.HashToUInt32(payload) != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)))
                    throw new InvalidDataException($"Event Hubs backlog {SegmentPath(bases[s])}: record at offset {from} is corrupt");
                from += HeaderBytes + length;
                bytes += HeaderBytes + length;
                records.Add(new BacklogRecord(Decode(payload), from));
            }
        }
        return records;
    }

    /// <summary>Moves the cursor past <paramref name="count"/> records ending at <paramref name="endOffset"/>; deletes whole segments behind it.</summary>
    public void Acknowledge(long endOffset, int count)
    {
        lock (_gate)
        {
            if (endOffset <= _ackOffset) return;
            if (endOffset > _writeOffset) throw new ArgumentOutOfRangeException(nameof(endOffset), "beyond the backlog's end");
            _ackOffset = endOffset;
            _pendingCount -= count;
            WriteCursor(endOffset);
            while (_segments.Count > 1 && _segments.Keys[1] <= _ackOffset)
            {
                File.Delete(SegmentPath(_segments.Keys[0]));
                _segments.RemoveAt(0);
            }
            // Everything confirmed and the current segment is large: start afresh so disk use shrinks.
            if (_ackOffset == _writeOffset && _writer!.Length >= _segmentBytes)
            {
                var old = _segments.Keys[0];
                StartSegment(_writeOffset);
                File.Delete(SegmentPath(old));
                _segments.Remove(old);
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _writer?.Dispose();
            _writer = null;
        }
        _appended.Dispose();
    }

    private void Recover(ILogger logger)
    {
        foreach (var path in Directory.EnumerateFiles(_directory, "*" + SegmentSuffix))
        {
            if (long.TryParse(Path.GetFileNameWithoutExtension(path), out var offset)) _segments[offset] = new FileInfo(path).Length;
            else logger.LogWarning("Event Hubs backlog: ignoring {File}, not a segment", path);
        }
        _ackOffset = ReadCursor(logger);
        if (_segments.Count == 0)
        {
            _writeOffset = _ackOffset;
            StartSegment(_writeOffset);
            return;
        }
        if (_ackOffset < _segments.Keys[0]) _ackOffset = _segments.Keys[0];

        // Check every record from the cursor on; cut a segment at its first bad record (a crash mid-append) and drop the segments after it.
        var header = new byte[HeaderBytes];
        for (var s = 0; s < _segments.Count; s++)
        {
            var baseOffset = _segments.Keys[s];
            var path = SegmentPath(baseOffset);
            using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            long position = 0, good = 0;
            var damaged = false;
            while (position < file.Length)
            {
                if (file.Length - position < HeaderBytes) { damaged = true; break; }
                file.Position = position;
                file.ReadExactly(header);
                var length = BinaryPrimitives.ReadInt32LittleEndian(header);
                if (length <= 0 || position + HeaderBytes + length > file.Length) { damaged = true; break; }
                var payload = new byte[length];
                file.ReadExactly(payload);
                if (Crc32.HashToUInt32(payload) != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4))) { damaged = true; break; }
                position += HeaderBytes + length;
                if (baseOffset + position > _ackOffset) _pendingCount++;
                good = position;
            }
            if (!damaged) continue;
            logger.LogWarning("Event Hubs backlog: {File} has a torn or corrupt record at byte {Position} (a crash mid-write); cut there", path, good);
            file.SetLength(good);
            _segments[baseOffset] = good;
            while (_segments.Count > s + 1)
            {
                var dropped = _segments.Keys[s + 1];
                logger.LogWarning("Event Hubs backlog: segment {File} follows a damaged one; removed", SegmentPath(dropped));
                File.Delete(SegmentPath(dropped));
                _segments.RemoveAt(s + 1);
            }
        }
        var last = _segments.Keys[^1];
        _writeOffset = last + _segments[last];
        if (_ackOffset > _writeOffset) _ackOffset = _writeOffset;
        _writer = new FileStream(SegmentPath(last), FileMode.Append, FileAccess.Write, FileShare.Read | FileShare.Delete);
        if (_pendingCount > 0)
            logger.LogInformation("Event Hubs backlog: {Count} event(s), {Bytes} bytes from a previous run still to send", _pendingCount, _writeOffset - _ackOffset);
        _appended.Release();
    }

    private FileStream StartSegment(long baseOffset)
    {
        _writer?.Dispose();
        _writer = new FileStream(SegmentPath(baseOffset), FileMode.Create, FileAccess.Write, FileShare.Read | FileShare.Delete);
        _segments[baseOffset] = 0;
        return _writer;
    }

    private string SegmentPath(long baseOffset) => Path.Combine(_directory, baseOffset.ToString("D20", System.Globalization.CultureInfo.InvariantCulture) + SegmentSuffix);

    private string CursorPath => Path.Combine(_directory, "ack");

    private long ReadCursor(ILogger logger)
    {
        if (!File.Exists(CursorPath)) return 0;
        var bytes = File.ReadAllBytes(CursorPath);
        if (bytes.Length == 12 && Crc32.HashToUInt32(bytes.AsSpan(0, 8)) == BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)))
            return BinaryPrimitives.ReadInt64LittleEndian(bytes);
        // Without a cursor everything on disk is sent again: duplicates, never a loss.
        logger.LogWarning("Event Hubs backlog: cursor {File} is damaged; every stored event will be sent again", CursorPath);
        return 0;
    }

    private void WriteCursor(long offset)
    {
        var bytes = new byte[12];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, offset);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), Crc32.HashToUInt32(bytes.AsSpan(0, 8)));
        var temporary = CursorPath + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            file.Write(bytes);
            file.Flush(flushToDisk: true);
        }
        File.Move(temporary, CursorPath, overwrite: true);
    }

    private static int PayloadBytes(EventHubsEvent item) =>
        1 + 8 + StringBytes(item.PartitionKey) + StringBytes(item.Type) + StringBytes(item.MessageId ?? "") + 4 + item.Body.Length;

    private static int StringBytes(string value) => 2 + Encoding.UTF8.GetByteCount(value);

    private static byte[] Encode(EventHubsEvent item)
    {
        var payloadLength = PayloadBytes(item);
        var record = new byte[HeaderBytes + payloadLength];
        var span = record.AsSpan(HeaderBytes);
        span[0] = FormatVersion;
        BinaryPrimitives.WriteInt64LittleEndian(span[1..], item.AcceptedAt.ToUnixTimeMilliseconds());
        var position = 9;
        foreach (var text in new[] { item.PartitionKey, item.Type, item.MessageId ?? "" })
        {
            var written = Encoding.UTF8.GetBytes(text, span[(position + 2)..]);
            BinaryPrimitives.WriteUInt16LittleEndian(span[position..], checked((ushort)written));
            position += 2 + written;
        }
        BinaryPrimitives.WriteInt32LittleEndian(span[position..], item.Body.Length);
        item.Body.Span.CopyTo(span[(position + 4)..]);
        BinaryPrimitives.WriteInt32LittleEndian(record, payloadLength);
        BinaryPrimitives.WriteUInt32LittleEndian(record.AsSpan(4), Crc32.HashToUInt32(span));
        return record;
    }

    private static EventHubsEvent Decode(byte[] payload)
    {
        var span = payload.AsSpan();
        if (span[0] != FormatVersion) throw new InvalidDataException($"Event Hubs backlog record format {span[0]} is unknown");
        var acceptedAt = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64LittleEndian(span[1..]));
        var position = 9;
        var texts = new string[3];
        for (var i = 0; i < texts.Length; i++)
        {
            var length = BinaryPrimitives.ReadUInt16LittleEndian(span[position..]);
            texts[i] = Encoding.UTF8.GetString(span.Slice(position + 2, length));
            position += 2 + length;
        }
        var bodyLength = BinaryPrimitives.ReadInt32LittleEndian(span[position..]);
        var body = span.Slice(position + 4, bodyLength).ToArray();
        return new EventHubsEvent(texts[0], body, texts[1], texts[2].Length == 0 ? null : texts[2]) { AcceptedAt = acceptedAt };
    }
}

/// <summary>One pending event and the backlog offset just past it (what to acknowledge once it is sent).</summary>
public sealed record BacklogRecord(EventHubsEvent Event, long EndOffset);
