using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace FedEdge.Compression.ErrorFeedback;

/// <summary>
/// Stable binary form of a device's error-feedback state, so the agent survives restarts:
/// <c>"FEEF" | u16 version (1) | u8 kind | u8 0 | i32 d | f32 η | i64 rounds | u16 L | L bytes UTF-8 codec
/// spec | u8 vector count | count × d × f32 | SHA-256 of everything before</c>, little-endian.
/// Reading treats the bytes as hostile: magic, version, checksum, sizes, codec and finiteness are checked.
/// </summary>
public static class ErrorFeedbackState
{
    public const ushort FormatVersion = 1;
    private static ReadOnlySpan<byte> Magic => "FEEF"u8;
    private const int FixedHeader = 4 + 2 + 1 + 1 + 4 + 4 + 8 + 2;
    private const int ChecksumLength = 32;

    public static byte[] Serialize(ErrorFeedbackCompressor state)
    {
        byte[] spec = Encoding.UTF8.GetBytes(state.Codec.Spec);
        IReadOnlyList<float[]> vectors = state.StateVectors;
        long length = FixedHeader + spec.Length + 1 + ((long)vectors.Count * state.Dimension * 4) + ChecksumLength;
        if (length > Array.MaxLength)
        {
            throw new InvalidOperationException($"Error-feedback state of {length} bytes is too large to serialize.");
        }
        byte[] buffer = new byte[length];
        Span<byte> span = buffer;
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], FormatVersion);
        span[6] = (byte)state.Kind;
        span[7] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], state.Dimension);
        BinaryPrimitives.WriteSingleLittleEndian(span[12..], state.Eta);
        BinaryPrimitives.WriteInt64LittleEndian(span[16..], state.Rounds);
        BinaryPrimitives.WriteUInt16LittleEndian(span[24..], (ushort)spec.Length);
        int offset = FixedHeader;
        spec.CopyTo(span[offset..]);
        offset += spec.Length;
        span[offset++] = (byte)vectors.Count;
        foreach (float[] vector in vectors)
        {
            MemoryMarshal.AsBytes(vector.AsSpan()).CopyTo(span[offset..]);
            offset += vector.Length * 4;
        }
        SHA256.HashData(span[..offset], span[offset..]);
        return buffer;
    }

    /// <summary>Restores a state; on failure <paramref name="state"/> is null and the check names the problem.</summary>
    public static PayloadCheck TryDeserialize(ReadOnlySpan<byte> bytes, out ErrorFeedbackCompressor? state)
    {
        state = null;
        if (bytes.Length < FixedHeader + 1 + ChecksumLength)
        {
            return PayloadCheck.Fail(PayloadError.Truncated, $"Error-feedback state of {bytes.Length} bytes is shorter than its header.");
        }
        if (!bytes[..4].SequenceEqual(Magic))
        {
            return PayloadCheck.Fail(PayloadError.Malformed, "Not an error-feedback state (bad magic).");
        }
        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]);
        if (version != FormatVersion)
        {
            return PayloadCheck.Fail(PayloadError.UnsupportedVersion, $"Error-feedback state format {version} (this build reads {FormatVersion}).");
        }
        Span<byte> checksum = stackalloc byte[ChecksumLength];
        SHA256.HashData(bytes[..^ChecksumLength], checksum);
        if (!checksum.SequenceEqual(bytes[^ChecksumLength..]))
        {
            return PayloadCheck.Fail(PayloadError.BadChecksum, "Error-feedback state checksum mismatch (file corrupted or truncated).");
        }
        byte kindByte = bytes[6];
        int d = BinaryPrimitives.ReadInt32LittleEndian(bytes[8..]);
        float eta = BinaryPrimitives.ReadSingleLittleEndian(bytes[12..]);
        long rounds = BinaryPrimitives.ReadInt64LittleEndian(bytes[16..]);
        int specLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes[24..]);
        if (kindByte > (byte)ErrorFeedbackKind.EControl || bytes[7] != 0)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"Unknown error-feedback kind {kindByte}.");
        }
        var kind = (ErrorFeedbackKind)kindByte;
        if (d < 0 || d > PayloadHeader.MaxDimension || rounds < 0 || !float.IsFinite(eta) || eta < 0)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"Error-feedback state has dimension {d}, rounds {rounds}, η {eta}.");
        }
        int offset = FixedHeader;
        if (bytes.Length - ChecksumLength < offset + specLength + 1)
        {
            return PayloadCheck.Fail(PayloadError.Truncated, "Error-feedback state ends inside its codec spec.");
        }
        string spec;
        try
        {
            spec = new UTF8Encoding(false, true).GetString(bytes.Slice(offset, specLength));
        }
        catch (ArgumentException)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, "Error-feedback codec spec is not UTF-8.");
        }
        offset += specLength;
        if (!UpdateCodecs.TryParse(spec, out IUpdateCodec? codec, out string? error))
        {
            return PayloadCheck.Fail(PayloadError.UnknownCodec, error);
        }
        int count = bytes[offset++];
        int expectedCount = kind switch
        {
            ErrorFeedbackKind.None => 0,
            ErrorFeedbackKind.EControl => 2,
            _ => 1,
        };
        if (count != expectedCount)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"{ErrorFeedbackCompressor.NameOf(kind)} state needs {expectedCount} vectors, found {count}.");
        }
        PayloadCheck length = PayloadHeader.ExpectLength(bytes.Length, offset + ((long)count * d * 4) + ChecksumLength, "error-feedback state");
        if (!length.IsValid)
        {
            return length;
        }
        var vectors = new float[count][];
        for (int v = 0; v < count; v++)
        {
            ReadOnlySpan<float> values = MemoryMarshal.Cast<byte, float>(bytes.Slice(offset, d * 4));
            int bad = FloatKernels.IndexOfNonFinite(values);
            if (bad >= 0)
            {
                return PayloadCheck.Fail(PayloadError.NonFinite, $"Error-feedback state vector {v} coordinate {bad} is not finite.");
            }
            vectors[v] = values.ToArray();
            offset += d * 4;
        }
        state = kind switch
        {
            ErrorFeedbackKind.None => new NoErrorFeedback(codec, d, rounds),
            ErrorFeedbackKind.Ef14 => new Ef14Compressor(codec, d, vectors[0], rounds),
            ErrorFeedbackKind.Ef21 => new Ef21Compressor(codec, d, vectors[0], rounds),
            _ => new EControlCompressor(codec, d, eta, vectors[0], vectors[1], rounds),
        };
        return PayloadCheck.Valid;
    }

    /// <summary>Writes the state to <paramref name="path"/> atomically (temp file, flush, rename).</summary>
    public static async Task SaveAsync(ErrorFeedbackCompressor state, string path, CancellationToken cancellationToken = default)
    {
        byte[] bytes = Serialize(state);
        string temp = path + ".tmp";
        await using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
        {
            await file.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Reads a saved state. <exception cref="InvalidDataException">The file is corrupt, naming why.</exception></summary>
    public static async Task<ErrorFeedbackCompressor> LoadAsync(string path, CancellationToken cancellationToken = default)
    {
        byte[] bytes = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        PayloadCheck check = TryDeserialize(bytes, out ErrorFeedbackCompressor? state);
        return state ?? throw new InvalidDataException($"Error-feedback state '{path}': {check}");
    }
}
