using System.Runtime.InteropServices;

namespace FedEdge.Compression;

/// <summary>Identity compressor: header + d little-endian fp32 values.</summary>
public sealed class Fp32Codec : IUpdateCodec
{
    public const byte PayloadTag = (byte)'F';

    public static Fp32Codec Instance { get; } = new();

    public string Id => "fp32";

    public string Spec => "fp32";

    public byte Tag => PayloadTag;

    public int MaxEncodedSize(int dimension) => PayloadHeader.MaxLength + (4 * dimension);

    public int Encode(ReadOnlySpan<float> values, Span<byte> destination)
    {
        int size = PayloadHeader.Length(values.Length) + (4 * values.Length);
        PayloadHeader.EnsureEncodable(values.Length, size, destination.Length);
        FloatKernels.EnsureFinite(values, nameof(values));
        int offset = PayloadHeader.Write(destination, PayloadTag, values.Length);
        MemoryMarshal.AsBytes(values).CopyTo(destination[offset..]);
        return size;
    }

    public PayloadCheck Validate(ReadOnlySpan<byte> encoded, out int dimension)
    {
        PayloadCheck check = ReadBody(encoded, out dimension, out ReadOnlySpan<float> body);
        if (!check.IsValid)
        {
            return check;
        }
        int bad = FloatKernels.IndexOfNonFinite(body);
        return bad < 0 ? PayloadCheck.Valid : PayloadCheck.Fail(PayloadError.NonFinite, $"fp32 coordinate {bad} is not finite.");
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
            ReadBody(encoded, out _, out ReadOnlySpan<float> body);
            body.CopyTo(destination);
        }
        return check;
    }

    private PayloadCheck ReadBody(ReadOnlySpan<byte> encoded, out int dimension, out ReadOnlySpan<float> body)
    {
        body = default;
        PayloadCheck check = PayloadHeader.Read(encoded, PayloadTag, Id, out dimension, out int offset);
        if (check.IsValid)
        {
            check = PayloadHeader.ExpectLength(encoded.Length, offset + (4L * dimension), Id);
        }
        if (check.IsValid)
        {
            body = MemoryMarshal.Cast<byte, float>(encoded[offset..]);
        }
        return check;
    }
}
