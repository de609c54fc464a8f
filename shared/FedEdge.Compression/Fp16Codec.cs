using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace FedEdge.Compression;

/// <summary>
/// Half-precision compressor: header + d little-endian IEEE binary16 values. Values beyond the fp16
/// range saturate to ±65504 instead of becoming infinities (error feedback carries the rest).
/// </summary>
public sealed class Fp16Codec : IUpdateCodec
{
    public const byte PayloadTag = (byte)'H';

    private const ushort ExponentMask = 0x7C00;
    private const ushort MaxFiniteMagnitude = 0x7BFF; // 65504

    public static Fp16Codec Instance { get; } = new();

    public string Id => "fp16";

    public string Spec => "fp16";

    public byte Tag => PayloadTag;

    public int MaxEncodedSize(int dimension) => PayloadHeader.MaxLength + (2 * dimension);

    public int Encode(ReadOnlySpan<float> values, Span<byte> destination)
    {
        int size = PayloadHeader.Length(values.Length) + (2 * values.Length);
        PayloadHeader.EnsureEncodable(values.Length, size, destination.Length);
        FloatKernels.EnsureFinite(values, nameof(values));
        int offset = PayloadHeader.Write(destination, PayloadTag, values.Length);
        Span<Half> halves = MemoryMarshal.Cast<byte, Half>(destination.Slice(offset, 2 * values.Length));
        TensorPrimitives.ConvertToHalf(values, halves);
        Saturate(MemoryMarshal.Cast<Half, ushort>(halves));
        return size;
    }

    public PayloadCheck Validate(ReadOnlySpan<byte> encoded, out int dimension)
    {
        PayloadCheck check = ReadBody(encoded, out dimension, out ReadOnlySpan<ushort> body);
        if (!check.IsValid)
        {
            return check;
        }
        int bad = FloatKernels.IndexOfNonFiniteHalf(body);
        return bad < 0 ? PayloadCheck.Valid : PayloadCheck.Fail(PayloadError.NonFinite, $"fp16 coordinate {bad} is not finite.");
    }

    public PayloadCheck Decode(ReadOnlySpan<byte> encoded, Span<float> destination)
    {
        PayloadCheck check = Validate(encoded, out int dimension);
        if (!check.IsValid)
        {
            return check;
        }
        check = PayloadHeader.ExpectDimension(dimension, destination.Length, Id);
        if (check.IsValid)
        {
            ReadBody(encoded, out _, out ReadOnlySpan<ushort> body);
            TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(body), destination);
        }
        return check;
    }

    private PayloadCheck ReadBody(ReadOnlySpan<byte> encoded, out int dimension, out ReadOnlySpan<ushort> body)
    {
        body = default;
        PayloadCheck check = PayloadHeader.Read(encoded, PayloadTag, Id, out dimension, out int offset);
        if (check.IsValid)
        {
            check = PayloadHeader.ExpectLength(encoded.Length, offset + (2L * dimension), Id);
        }
        if (check.IsValid)
        {
            body = MemoryMarshal.Cast<byte, ushort>(encoded[offset..]);
        }
        return check;
    }

    /// <summary>Replaces the infinities produced by overflow with the largest finite half of the same sign.</summary>
    private static void Saturate(Span<ushort> halves)
    {
        int i = FloatKernels.IndexOfNonFiniteHalf(halves);
        if (i < 0)
        {
            return;
        }
        for (; i < halves.Length; i++)
        {
            if ((halves[i] & ExponentMask) == ExponentMask)
            {
                halves[i] = (ushort)((halves[i] & 0x8000) | MaxFiniteMagnitude);
            }
        }
    }
}
