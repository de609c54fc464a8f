namespace FedEdge.Compression;

/// <summary>The common payload prefix <c>[tag][version][varint d]</c> and the codecs' size limits.</summary>
public static class PayloadHeader
{
    public const byte FormatVersion = 1;

    /// <summary>Largest dimension any codec accepts (2^28 floats = 1 GiB as fp32).</summary>
    public const int MaxDimension = 1 << 28;

    /// <summary>Largest header: tag + version + a 5-byte varint.</summary>
    public const int MaxLength = 2 + 5;

    public static int Write(Span<byte> destination, byte tag, int dimension)
    {
        destination[0] = tag;
        destination[1] = FormatVersion;
        return 2 + Varint.Write(destination[2..], (ulong)dimension);
    }

    public static int Length(int dimension) => 2 + Varint.Length((ulong)dimension);

    public static void EnsureEncodable(int dimension, int required, int destinationLength)
    {
        if (dimension > MaxDimension)
        {
            throw new ArgumentException($"The update has {dimension} coordinates; the limit is {MaxDimension}.", "values");
        }
        if (destinationLength < required)
        {
            throw new ArgumentException($"The destination holds {destinationLength} bytes; encoding needs {required}.", "destination");
        }
    }

    /// <summary>Reads and checks the prefix of an untrusted payload.</summary>
    public static PayloadCheck Read(ReadOnlySpan<byte> encoded, byte expectedTag, string codecId, out int dimension, out int consumed)
    {
        dimension = 0;
        consumed = 0;
        if (encoded.Length < 3)
        {
            return PayloadCheck.Fail(PayloadError.Truncated, $"{codecId} payload of {encoded.Length} bytes is shorter than its header.");
        }
        if (encoded[0] != expectedTag)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"Payload tag 0x{encoded[0]:X2} is not the {codecId} tag 0x{expectedTag:X2}.");
        }
        if (encoded[1] != FormatVersion)
        {
            return PayloadCheck.Fail(PayloadError.UnsupportedVersion, $"{codecId} payload format version {encoded[1]} (this build reads {FormatVersion}).");
        }
        if (!Varint.TryRead(encoded[2..], out ulong d, out int n))
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"{codecId} payload has a bad dimension varint.");
        }
        if (d > MaxDimension)
        {
            return PayloadCheck.Fail(PayloadError.Oversized, $"{codecId} payload announces {d} coordinates; the limit is {MaxDimension}.");
        }
        dimension = (int)d;
        consumed = 2 + n;
        return PayloadCheck.Valid;
    }

    /// <summary>Checks that the payload is exactly <paramref name="expected"/> bytes long.</summary>
    public static PayloadCheck ExpectLength(int actual, long expected, string codecId)
    {
        if (actual < expected)
        {
            return PayloadCheck.Fail(PayloadError.Truncated, $"{codecId} payload has {actual} bytes; its header implies {expected}.");
        }
        if (actual > expected)
        {
            return PayloadCheck.Fail(PayloadError.Oversized, $"{codecId} payload has {actual} bytes; its header implies {expected}.");
        }
        return PayloadCheck.Valid;
    }

    public static PayloadCheck ExpectDimension(int payloadDimension, int destinationLength, string codecId) =>
        payloadDimension == destinationLength
            ? PayloadCheck.Valid
            : PayloadCheck.Fail(PayloadError.DimensionMismatch, $"{codecId} payload has {payloadDimension} coordinates; the destination has {destinationLength}.");
}
