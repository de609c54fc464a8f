using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using FedEdge.Cloud.Grains;

namespace FedEdge.Cloud.Storage;

/// <summary>
/// One record of a <see cref="FileUpdateLog"/> segment: a fixed header, the update's metadata and its envelope.
/// <code>
/// header (16 B): metadata length u32 | envelope length u32 | XxHash3-64 of metadata ‖ envelope u64   (little-endian)
/// metadata:      format u8 = 1 | base version i64 | sample count i64 | bytes i32 | received at (UTC ticks) i64 |
///                has loss u8 | loss f64 | device id (u16 length, UTF-8) | update id (u16 length, UTF-8)
/// envelope:      the signed update envelope as received
/// </code>
/// The hash tells a complete record from one a crash cut short (or a damaged one).
/// </summary>
internal static class UpdateLogRecord
{
    public const int HeaderBytes = 16;
    private const byte Format = 1;
    private const int MaxMetadataBytes = 1 << 16;

    /// <summary>The header and metadata of <paramref name="update"/>; the envelope follows them in the file.</summary>
    public static byte[] EncodeHead(LoggedUpdate update)
    {
        var p = update.Update;
        var device = Encoding.UTF8.GetBytes(p.DeviceId);
        var id = Encoding.UTF8.GetBytes(p.UpdateId);
        if (device.Length > ushort.MaxValue || id.Length > ushort.MaxValue)
            throw new ArgumentException($"Device id or update id of {p.UpdateId} is too long for the update log", nameof(update));
        var metadataLength = 1 + 8 + 8 + 4 + 8 + 1 + 8 + 2 + device.Length + 2 + id.Length;
        var head = new byte[HeaderBytes + metadataLength];
        var m = head.AsSpan(HeaderBytes);
        m[0] = Format;
        BinaryPrimitives.WriteInt64LittleEndian(m[1..], p.BaseVersion);
        BinaryPrimitives.WriteInt64LittleEndian(m[9..], p.SampleCount);
        BinaryPrimitives.WriteInt32LittleEndian(m[17..], p.Bytes);
        BinaryPrimitives.WriteInt64LittleEndian(m[21..], p.ReceivedAt.UtcTicks);
        m[29] = p.TrainLoss is null ? (byte)0 : (byte)1;
        BinaryPrimitives.WriteDoubleLittleEndian(m[30..], p.TrainLoss ?? 0);
        BinaryPrimitives.WriteUInt16LittleEndian(m[38..], (ushort)device.Length);
        device.CopyTo(m[40..]);
        BinaryPrimitives.WriteUInt16LittleEndian(m[(40 + device.Length)..], (ushort)id.Length);
        id.CopyTo(m[(42 + device.Length)..]);

        BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)metadataLength);
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(4), (uint)update.Envelope.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(head.AsSpan(8), Hash(m, update.Envelope.Span));
        return head;
    }

    /// <summary>Reads the lengths from a header; false when they cannot belong to a record.</summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> header, int maxEnvelopeBytes, out int metadataLength, out int envelopeLength, out ulong hash)
    {
        var m = BinaryPrimitives.ReadUInt32LittleEndian(header);
        var e = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        hash = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        metadataLength = (int)Math.Min(m, int.MaxValue);
        envelopeLength = (int)Math.Min(e, int.MaxValue);
        return m is > 0 and <= MaxMetadataBytes && e <= (uint)maxEnvelopeBytes;
    }

    /// <summary>The update a record holds; null when its hash or metadata does not check out.</summary>
    public static LoggedUpdate? TryDecode(ReadOnlySpan<byte> metadata, byte[] envelope, ulong hash)
    {
        if (Hash(metadata, envelope) != hash || metadata.Length < 42 || metadata[0] != Format) return null;
        var deviceLength = BinaryPrimitives.ReadUInt16LittleEndian(metadata[38..]);
        if (metadata.Length < 42 + deviceLength) return null;
        var idLength = BinaryPrimitives.ReadUInt16LittleEndian(metadata[(40 + deviceLength)..]);
        if (metadata.Length != 42 + deviceLength + idLength) return null;
        // A record whose hash checks out may still hold a time no DateTimeOffset can hold (found by fuzzing): refused, not thrown.
        var receivedTicks = BinaryPrimitives.ReadInt64LittleEndian(metadata[21..]);
        if (receivedTicks is < 0 || receivedTicks > DateTimeOffset.MaxValue.UtcTicks) return null;
        var pending = new PendingUpdate(
            DeviceId: Encoding.UTF8.GetString(metadata.Slice(40, deviceLength)),
            UpdateId: Encoding.UTF8.GetString(metadata.Slice(42 + deviceLength, idLength)),
            BaseVersion: BinaryPrimitives.ReadInt64LittleEndian(metadata[1..]),
            SampleCount: BinaryPrimitives.ReadInt64LittleEndian(metadata[9..]),
            Bytes: BinaryPrimitives.ReadInt32LittleEndian(metadata[17..]),
            TrainLoss: metadata[29] == 0 ? null : BinaryPrimitives.ReadDoubleLittleEndian(metadata[30..]),
            ReceivedAt: new DateTimeOffset(receivedTicks, TimeSpan.Zero));
        return new LoggedUpdate(pending, envelope);
    }

    private static ulong Hash(ReadOnlySpan<byte> metadata, ReadOnlySpan<byte> envelope)
    {
        var hash = new XxHash3();
        hash.Append(metadata);
        hash.Append(envelope);
        return hash.GetCurrentHashAsUInt64();
    }
}
