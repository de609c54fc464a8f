namespace FedEdge.Compression;

/// <summary>LEB128 unsigned varints (the protobuf encoding), with strict bounds for untrusted input.</summary>
public static class Varint
{
    public const int MaxLength64 = 10;

    public static int Length(ulong value)
    {
        int n = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            n++;
        }
        return n;
    }

    /// <summary>Writes <paramref name="value"/>; the caller guarantees room for <see cref="Length"/> bytes.</summary>
    public static int Write(Span<byte> destination, ulong value)
    {
        int i = 0;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[i++] = (byte)value;
        return i;
    }

    /// <summary>Reads one varint; false on truncation, over-long encodings or overflow of 64 bits.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out ulong value, out int consumed)
    {
        value = 0;
        int shift = 0;
        for (int i = 0; i < source.Length && i < MaxLength64; i++)
        {
            byte b = source[i];
            if (i == MaxLength64 - 1 && b > 1)
            {
                break; // would overflow 64 bits
            }
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                consumed = i + 1;
                return true;
            }
            shift += 7;
        }
        value = 0;
        consumed = 0;
        return false;
    }
}
