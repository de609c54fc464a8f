using System.Buffers;
using System.Numerics.Tensors;

namespace FedEdge.Compression;

/// <summary>
/// A compressor of a flat update vector (d float coordinates) into a self-describing payload.
/// Every payload starts with <c>[tag byte][format version byte][varint d]</c>; the rest is
/// codec-specific (docs/protocol.md, Codecs). Encoding trusts its input vector only after a
/// finiteness check; decoding and validation treat bytes as hostile and never throw on them.
/// </summary>
public interface IUpdateCodec
{
    /// <summary>Short codec id as used in specs: "fp32", "fp16", "topk", "sign".</summary>
    string Id { get; }

    /// <summary>Canonical spec that <see cref="UpdateCodecs.Parse"/> turns back into an equal codec.</summary>
    string Spec { get; }

    /// <summary>First byte of every payload of this codec.</summary>
    byte Tag { get; }

    /// <summary>Upper bound of the encoded size of a d-coordinate vector.</summary>
    int MaxEncodedSize(int dimension);

    /// <summary>Encodes <paramref name="values"/> into <paramref name="destination"/>; returns the bytes written.</summary>
    /// <exception cref="ArgumentException">A value is NaN/∞, the vector is too long, or the destination is too small.</exception>
    int Encode(ReadOnlySpan<float> values, Span<byte> destination);

    /// <summary>Checks structure, sizes and finiteness without decoding; reports the payload's dimension.</summary>
    PayloadCheck Validate(ReadOnlySpan<byte> encoded, out int dimension);

    /// <summary>
    /// Decodes into <paramref name="destination"/>, whose length must equal the payload's dimension. A successful
    /// decode writes every coordinate, whatever the destination held before (callers reuse buffers without clearing).
    /// </summary>
    PayloadCheck Decode(ReadOnlySpan<byte> encoded, Span<float> destination);

    /// <summary>
    /// <paramref name="accumulator"/> += <paramref name="weight"/> · decode(<paramref name="encoded"/>), whose length must
    /// equal the payload's dimension. The payload is fully checked (structure, dimension, finiteness) before the
    /// accumulator is touched, so a refused one leaves it as it was. This default decodes into a pooled buffer first;
    /// a codec that can add straight from its encoded form (<see cref="SignCodec"/>) skips that O(d) write and re-read.
    /// </summary>
    PayloadCheck DecodeAdd(ReadOnlySpan<byte> encoded, float weight, Span<float> accumulator)
    {
        float[] decoded = ArrayPool<float>.Shared.Rent(accumulator.Length);
        try
        {
            Span<float> values = decoded.AsSpan(0, accumulator.Length);
            PayloadCheck check = Decode(encoded, values);
            if (check.IsValid)
            {
                TensorPrimitives.MultiplyAdd(values, weight, accumulator, accumulator);
            }
            return check;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(decoded);
        }
    }
}

public static class UpdateCodecExtensions
{
    /// <summary>Encodes into an <see cref="IBufferWriter{T}"/>; returns the bytes written.</summary>
    public static int Encode(this IUpdateCodec codec, ReadOnlySpan<float> values, IBufferWriter<byte> output)
    {
        Span<byte> span = output.GetSpan(codec.MaxEncodedSize(values.Length));
        int written = codec.Encode(values, span);
        output.Advance(written);
        return written;
    }

    /// <summary>Encodes into a new array of exactly the encoded size (convenience, allocates).</summary>
    public static byte[] Encode(this IUpdateCodec codec, ReadOnlySpan<float> values)
    {
        byte[] rented = ArrayPool<byte>.Shared.Rent(codec.MaxEncodedSize(values.Length));
        try
        {
            int written = codec.Encode(values, rented);
            return rented.AsSpan(0, written).ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Validates then decodes into a new array (convenience, allocates).</summary>
    public static PayloadCheck Decode(this IUpdateCodec codec, ReadOnlySpan<byte> encoded, out float[]? values)
    {
        values = null;
        PayloadCheck check = codec.Validate(encoded, out int dimension);
        if (!check.IsValid)
        {
            return check;
        }
        var result = new float[dimension];
        check = codec.Decode(encoded, result);
        if (check.IsValid)
        {
            values = result;
        }
        return check;
    }
}
