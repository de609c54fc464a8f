using System.Buffers.Binary;

namespace FedEdge.Aggregation.SignedDirections;

/// <summary>
/// The wire form of a FAR-SIGN answer message (algorithms.md §4 [design]: many directions per message, one bit each):
/// K as a 2-byte little-endian header, then ⌈K/8⌉ bytes of answers, LSB first: bit k%8 of byte 2 + k/8 is answer k,
/// 1 for b_k = +1 and 0 for b_k = −1. The padding bits after answer K − 1 must be zero, so every K answers have
/// exactly one encoding.
/// <example>K = 3, answers (+1, −1, +1): bytes 03 00 05.</example>
/// </summary>
public static class SignAnswerPacket
{
    public const int HeaderBytes = 2;

    /// <summary>The most answers the header can count.</summary>
    public const int MaxAnswers = ushort.MaxValue;

    /// <summary>Bytes a packet of <paramref name="count"/> answers takes.</summary>
    public static int Length(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, MaxAnswers);
        return HeaderBytes + ((count + 7) >> 3);
    }

    /// <summary>Writes the header for <paramref name="count"/> answers and clears the answer bits (all −1).</summary>
    public static void Start(Span<byte> packet, int count)
    {
        int length = Length(count);
        if (packet.Length < length)
        {
            throw new ArgumentException($"{count} answers take {length} bytes; the buffer has {packet.Length}.", nameof(packet));
        }

        BinaryPrimitives.WriteUInt16LittleEndian(packet, (ushort)count);
        packet[HeaderBytes..length].Clear();
    }

    /// <summary>Sets answer <paramref name="k"/> to +1 (true) or −1 (false).</summary>
    public static void Set(Span<byte> packet, int k, bool positive)
    {
        int at = HeaderBytes + (k >> 3);
        byte bit = (byte)(1 << (k & 7));
        packet[at] = positive ? (byte)(packet[at] | bit) : (byte)(packet[at] & ~bit);
    }

    /// <summary>The packet of the answers sign(v_k) (a positive value is +1, anything else −1), e.g. ±1 values decoded from
    /// the scaled-sign codec the answers travel in.</summary>
    public static byte[] FromSigns(ReadOnlySpan<float> answers)
    {
        var packet = new byte[Length(answers.Length)];
        Start(packet, answers.Length);
        for (int k = 0; k < answers.Length; k++)
        {
            if (answers[k] > 0)
            {
                Set(packet, k, positive: true);
            }
        }

        return packet;
    }

    /// <summary>K, the answers the packet carries (after <see cref="Validate"/>).</summary>
    public static int Count(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt16LittleEndian(packet);

    /// <summary>b_k ∈ {+1, −1}.</summary>
    public static int Sign(ReadOnlySpan<byte> packet, int k) => ((packet[HeaderBytes + (k >> 3)] >> (k & 7)) & 1) != 0 ? 1 : -1;

    /// <summary>Why <paramref name="packet"/> is not a packet of 1 … <paramref name="maxAnswers"/> answers, or null.</summary>
    public static string? Validate(ReadOnlySpan<byte> packet, int maxAnswers)
    {
        if (packet.Length < HeaderBytes)
        {
            return $"the answer packet has {packet.Length} byte(s), shorter than its {HeaderBytes}-byte header";
        }

        int count = Count(packet);
        if (count == 0)
        {
            return "the answer packet carries no answers";
        }

        if (count > maxAnswers)
        {
            return $"the answer packet carries {count} answers, above the {maxAnswers} directions configured";
        }

        int expected = HeaderBytes + ((count + 7) >> 3);
        if (packet.Length != expected)
        {
            return $"the answer packet has {packet.Length} bytes; {count} answers take {expected}";
        }

        int used = count & 7;
        if (used != 0 && (packet[^1] >> used) != 0)
        {
            return $"padding bits after answer {count} are set";
        }

        return null;
    }
}
