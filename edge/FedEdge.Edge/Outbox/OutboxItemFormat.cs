using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace FedEdge.Edge.Outbox;

/// <summary>
/// On-disk layout of one outbox item, little-endian:
/// <c>"FEOB" | u8 version=1 | i64 sequence | i64 enqueuedUnixMs | u16 idLength | id (UTF-8) | u32 payloadLength | payload | SHA-256 of everything before</c>.
/// The trailing hash makes torn or bit-rotted files detectable so they can be quarantined instead of sent.
/// </summary>
internal static class OutboxItemFormat
{
    public const string Extension = ".upd";
    private static ReadOnlySpan<byte> Magic => "FEOB"u8;
    private const byte Version = 1;
    private const int FixedHeader = 4 + 1 + 8 + 8 + 2;
    private const int HashBytes = 32;
    public const int MaxUpdateIdBytes = 1024;

    public static string FileName(long sequence) => sequence.ToString("D20", System.Globalization.CultureInfo.InvariantCulture) + Extension;

    public static bool TryParseFileName(string fileName, out long sequence)
    {
        sequence = 0;
        return fileName.EndsWith(Extension, StringComparison.Ordinal)
            && fileName.Length == 20 + Extension.Length
            && long.TryParse(fileName.AsSpan(0, 20), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out sequence);
    }

    public static long FileSize(int updateIdBytes, int payloadBytes) => FixedHeader + updateIdBytes + 4L + payloadBytes + HashBytes;

    public static byte[] Encode(long sequence, string updateId, DateTimeOffset enqueuedAt, ReadOnlySpan<byte> payload)
    {
        var id = Encoding.UTF8.GetBytes(updateId);
        if (id.Length is 0 or > MaxUpdateIdBytes)
            throw new ArgumentException($"Update id must be 1..{MaxUpdateIdBytes} UTF-8 bytes, got {id.Length}.", nameof(updateId));
        var buffer = new byte[FileSize(id.Length, payload.Length)];
        var span = buffer.AsSpan();
        Magic.CopyTo(span);
        span[4] = Version;
        BinaryPrimitives.WriteInt64LittleEndian(span[5..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(span[13..], enqueuedAt.ToUnixTimeMilliseconds());
        BinaryPrimitives.WriteUInt16LittleEndian(span[21..], (ushort)id.Length);
        id.CopyTo(span[FixedHeader..]);
        var at = FixedHeader + id.Length;
        BinaryPrimitives.WriteUInt32LittleEndian(span[at..], (uint)payload.Length);
        payload.CopyTo(span[(at + 4)..]);
        var body = span[..^HashBytes];
        SHA256.HashData(body, span[^HashBytes..]);
        return buffer;
    }

    /// <summary>Decodes and verifies a whole item file; the reason says what was wrong otherwise.</summary>
    public static bool TryDecode(ReadOnlyMemory<byte> file, long expectedSequence, out OutboxItem? item, out string reason)
    {
        item = null;
        var span = file.Span;
        if (span.Length < FixedHeader + 4 + HashBytes)
        {
            reason = $"file is {span.Length} bytes, shorter than the smallest item";
            return false;
        }
        if (!span[..4].SequenceEqual(Magic))
        {
            reason = "bad magic";
            return false;
        }
        if (span[4] != Version)
        {
            reason = $"unknown format version {span[4]}";
            return false;
        }
        Span<byte> hash = stackalloc byte[HashBytes];
        SHA256.HashData(span[..^HashBytes], hash);
        if (!hash.SequenceEqual(span[^HashBytes..]))
        {
            reason = "checksum mismatch";
            return false;
        }
        var sequence = BinaryPrimitives.ReadInt64LittleEndian(span[5..]);
        if (sequence != expectedSequence)
        {
            reason = $"sequence {sequence} does not match the file name's {expectedSequence}";
            return false;
        }
        var enqueuedMs = BinaryPrimitives.ReadInt64LittleEndian(span[13..]);
        // A file whose checksum holds may still carry a time no DateTimeOffset can hold (found by fuzzing): refused, not thrown.
        if (enqueuedMs < DateTimeOffset.MinValue.ToUnixTimeMilliseconds() || enqueuedMs > DateTimeOffset.MaxValue.ToUnixTimeMilliseconds())
        {
            reason = $"enqueued time {enqueuedMs} ms is out of range";
            return false;
        }
        int idLength = BinaryPrimitives.ReadUInt16LittleEndian(span[21..]);
        var at = FixedHeader + idLength;
        if (idLength == 0 || at + 4 > span.Length - HashBytes)
        {
            reason = $"update id length {idLength} out of range";
            return false;
        }
        var payloadLength = BinaryPrimitives.ReadUInt32LittleEndian(span[at..]);
        if (FileSize(idLength, checked((int)Math.Min(payloadLength, int.MaxValue))) != span.Length)
        {
            reason = $"payload length {payloadLength} does not match the file size {span.Length}";
            return false;
        }
        var id = Encoding.UTF8.GetString(span.Slice(FixedHeader, idLength));
        item = new OutboxItem(sequence, id, DateTimeOffset.FromUnixTimeMilliseconds(enqueuedMs), file.Slice(at + 4, (int)payloadLength))
        {
            FileBytes = span.Length,
        };
        reason = "";
        return true;
    }
}
