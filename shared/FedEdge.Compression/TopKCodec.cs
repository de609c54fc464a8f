using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Compression;

/// <summary>Value precision of a top-k payload.</summary>
public enum TopKValueFormat : byte
{
    Fp32 = 0,
    Fp16 = 1,
}

/// <summary>
/// Top-k sparsifier (Stich, Cordonnier and Jaggi 2018, "Sparsified SGD with Memory"): keeps the
/// k = ⌈α·d⌉ coordinates of largest magnitude (ties broken by lower index), found with an O(d)
/// quickselect on |v| rather than a sort.
/// <para>Payload: <c>[tag 'K'][version][varint d][varint k][value format byte: 0 fp32, 1 fp16]
/// [k values][k varint index gaps]</c>. Indices are strictly increasing; the first gap is the first
/// index, each later gap is index − previous index − 1.</para>
/// </summary>
public sealed class TopKCodec : IUpdateCodec
{
    public const byte PayloadTag = (byte)'K';

    public TopKCodec(double ratio, TopKValueFormat valueFormat = TopKValueFormat.Fp32)
    {
        if (!(ratio > 0 && ratio <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(ratio), ratio, "The top-k ratio α must be in (0, 1].");
        }
        if (valueFormat is not (TopKValueFormat.Fp32 or TopKValueFormat.Fp16))
        {
            throw new ArgumentOutOfRangeException(nameof(valueFormat), valueFormat, "Unknown top-k value format.");
        }
        Ratio = ratio;
        ValueFormat = valueFormat;
    }

    public double Ratio { get; }

    public TopKValueFormat ValueFormat { get; }

    public string Id => "topk";

    public string Spec => ValueFormat == TopKValueFormat.Fp32
        ? $"topk:{Ratio.ToString("R", CultureInfo.InvariantCulture)}"
        : $"topk:{Ratio.ToString("R", CultureInfo.InvariantCulture)},values=fp16";

    public byte Tag => PayloadTag;

    private int ValueWidth => ValueFormat == TopKValueFormat.Fp32 ? 4 : 2;

    /// <summary>Number of kept coordinates for dimension d: ⌈α·d⌉ clamped to [1, d].</summary>
    public int KeptCount(int dimension) => dimension == 0 ? 0 : (int)Math.Clamp(Math.Ceiling(Ratio * dimension), 1, dimension);

    public int MaxEncodedSize(int dimension)
    {
        long k = KeptCount(dimension);
        long size = PayloadHeader.MaxLength + 5 + 1 + (k * (ValueWidth + 5));
        return size > int.MaxValue ? int.MaxValue : (int)size;
    }

    public int Encode(ReadOnlySpan<float> values, Span<byte> destination)
    {
        int d = values.Length;
        int k = KeptCount(d);
        if (d > PayloadHeader.MaxDimension)
        {
            PayloadHeader.EnsureEncodable(d, 0, destination.Length);
        }
        FloatKernels.EnsureFinite(values, nameof(values));
        int headerLength = PayloadHeader.Length(d) + Varint.Length((ulong)k) + 1;
        PayloadHeader.EnsureEncodable(d, headerLength + (k * ValueWidth), destination.Length);

        int offset = PayloadHeader.Write(destination, PayloadTag, d);
        offset += Varint.Write(destination[offset..], (ulong)k);
        destination[offset++] = (byte)ValueFormat;
        if (k == 0)
        {
            return offset;
        }

        float threshold = KthLargestMagnitude(values, k, out int greater);
        int tiesLeft = k - greater;
        Span<byte> valueBytes = destination.Slice(offset, k * ValueWidth);
        int gapOffset = offset + valueBytes.Length;
        int previous = -1;
        int written = 0;
        var scan = new MagnitudeScanner(values, threshold);
        while (written < k && scan.MoveNext(out int i))
        {
            if (MathF.Abs(values[i]) == threshold && tiesLeft-- <= 0)
            {
                continue;
            }
            WriteValue(valueBytes, written, values[i]);
            uint gap = (uint)(i - previous - 1);
            if (destination.Length - gapOffset < Varint.Length(gap))
            {
                throw new ArgumentException($"The destination holds {destination.Length} bytes; it is too small for this top-k payload (see MaxEncodedSize).", nameof(destination));
            }
            gapOffset += Varint.Write(destination[gapOffset..], gap);
            previous = i;
            written++;
        }
        return gapOffset;
    }

    private void WriteValue(Span<byte> valueBytes, int slot, float value)
    {
        if (ValueFormat == TopKValueFormat.Fp32)
        {
            BinaryPrimitives.WriteSingleLittleEndian(valueBytes[(4 * slot)..], value);
        }
        else
        {
            // Saturate rather than overflow to infinity.
            Half half = (Half)Math.Clamp(value, -65504f, 65504f);
            BinaryPrimitives.WriteHalfLittleEndian(valueBytes[(2 * slot)..], half);
        }
    }

    /// <summary>
    /// The k-th largest |v| and how many magnitudes exceed it. For small k/d a strided sample of 4096
    /// magnitudes gives a lower bound t₀ a little below the expected threshold; one vectorised pass keeps
    /// the candidates |v| ≥ t₀ (about 2k) and the quickselect runs on those only. When the sample misled
    /// (fewer than k or too many candidates) the quickselect runs on all of |v|. Either way O(d).
    /// </summary>
    private static float KthLargestMagnitude(ReadOnlySpan<float> values, int k, out int greater)
    {
        const int SampleSize = 4096;
        int d = values.Length;
        if (d >= 16 * SampleSize && k <= d / 16)
        {
            float[] sample = ArrayPool<float>.Shared.Rent(SampleSize);
            int capacity = (4 * k) + SampleSize;
            float[] candidates = ArrayPool<float>.Shared.Rent(capacity);
            try
            {
                for (int j = 0; j < SampleSize; j++)
                {
                    sample[j] = MathF.Abs(values[(int)((long)j * d / SampleSize)]);
                }
                double expected = (double)k * SampleSize / d; // rank of the threshold in the sample
                int rank = (int)Math.Min(SampleSize - 1, (2 * expected) + (3 * Math.Sqrt(expected)) + 8);
                float lowerBound = Quickselect.KthSmallest(sample.AsSpan(0, SampleSize), SampleSize - 1 - rank);
                int count = 0;
                var scan = new MagnitudeScanner(values, lowerBound);
                while (count <= capacity && scan.MoveNext(out int i))
                {
                    if (count == capacity)
                    {
                        count++;
                        break;
                    }
                    candidates[count++] = MathF.Abs(values[i]);
                }
                if (count >= k && count <= capacity)
                {
                    return SelectFrom(candidates.AsSpan(0, count), k, out greater);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(sample);
                ArrayPool<float>.Shared.Return(candidates);
            }
        }
        float[] rented = ArrayPool<float>.Shared.Rent(d);
        try
        {
            Span<float> magnitudes = rented.AsSpan(0, d);
            TensorPrimitives.Abs(values, magnitudes);
            return SelectFrom(magnitudes, k, out greater);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>k-th largest of <paramref name="magnitudes"/> (reordered) and the count strictly above it.</summary>
    private static float SelectFrom(Span<float> magnitudes, int k, out int greater)
    {
        float threshold = Quickselect.KthSmallest(magnitudes, magnitudes.Length - k);
        // After selection everything before position n−k is ≤ threshold; count the strictly larger ones after it.
        greater = 0;
        foreach (float m in magnitudes[(magnitudes.Length - k)..])
        {
            if (m > threshold)
            {
                greater++;
            }
        }
        return threshold;
    }

    public PayloadCheck Validate(ReadOnlySpan<byte> encoded, out int dimension) => Read(encoded, default, decode: false, out dimension);

    public PayloadCheck Decode(ReadOnlySpan<byte> encoded, Span<float> destination)
    {
        PayloadCheck check = Read(encoded, default, decode: false, out int dimension);
        if (check.IsValid)
        {
            check = PayloadHeader.ExpectDimension(dimension, destination.Length, Id);
        }
        if (check.IsValid)
        {
            destination.Clear();
            check = Read(encoded, destination, decode: true, out _);
        }
        return check;
    }

    /// <summary>Validates (and optionally scatters) a payload; accepts either value format.</summary>
    private PayloadCheck Read(ReadOnlySpan<byte> encoded, Span<float> destination, bool decode, out int dimension)
    {
        PayloadCheck check = PayloadHeader.Read(encoded, PayloadTag, Id, out dimension, out int offset);
        if (!check.IsValid)
        {
            return check;
        }
        int d = dimension;
        if (!Varint.TryRead(encoded[offset..], out ulong kk, out int n) || kk > (ulong)d)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"top-k payload has a bad count of kept coordinates (d = {d}).");
        }
        offset += n;
        if (offset >= encoded.Length)
        {
            return PayloadCheck.Fail(PayloadError.Truncated, "top-k payload ends before its value format.");
        }
        byte format = encoded[offset++];
        if (format > (byte)TopKValueFormat.Fp16)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"top-k value format {format} is unknown.");
        }
        int k = (int)kk;
        int width = format == (byte)TopKValueFormat.Fp32 ? 4 : 2;
        if (encoded.Length - offset < (long)k * width)
        {
            return PayloadCheck.Fail(PayloadError.Truncated, $"top-k payload ends inside its {k} values.");
        }
        ReadOnlySpan<byte> valueBytes = encoded.Slice(offset, k * width);
        offset += k * width;
        long index = -1;
        for (int j = 0; j < k; j++)
        {
            if (!Varint.TryRead(encoded[offset..], out ulong gap, out n))
            {
                return PayloadCheck.Fail(PayloadError.Truncated, $"top-k payload ends inside index {j}.");
            }
            offset += n;
            index += (long)Math.Min(gap, (ulong)d) + 1;
            if (index >= d)
            {
                return PayloadCheck.Fail(PayloadError.Malformed, $"top-k index {j} is beyond the dimension {d}.");
            }
            float value = width == 4
                ? BinaryPrimitives.ReadSingleLittleEndian(valueBytes[(4 * j)..])
                : (float)BinaryPrimitives.ReadHalfLittleEndian(valueBytes[(2 * j)..]);
            if (!float.IsFinite(value))
            {
                return PayloadCheck.Fail(PayloadError.NonFinite, $"top-k value {j} (coordinate {index}) is not finite.");
            }
            if (decode)
            {
                destination[(int)index] = value;
            }
        }
        return offset == encoded.Length
            ? PayloadCheck.Valid
            : PayloadCheck.Fail(PayloadError.Oversized, $"top-k payload has {encoded.Length - offset} bytes after its last index.");
    }
}

/// <summary>Yields, in increasing order, the indices i with |v_i| ≥ threshold; 8 coordinates per vector compare.</summary>
internal ref struct MagnitudeScanner(ReadOnlySpan<float> values, float threshold)
{
    private readonly ReadOnlySpan<float> _values = values;
    private readonly float _threshold = threshold;
    private int _base;
    private int _next;
    private uint _mask;

    public bool MoveNext(out int index)
    {
        while (_mask == 0)
        {
            if (_next >= _values.Length)
            {
                index = -1;
                return false;
            }
            _base = _next;
            _mask = MaskAt(_base);
            _next += 8;
        }
        index = _base + BitOperations.TrailingZeroCount(_mask);
        _mask &= _mask - 1;
        return true;
    }

    private readonly uint MaskAt(int start)
    {
        ref float first = ref MemoryMarshal.GetReference(_values);
        if (start + 8 <= _values.Length)
        {
            if (Vector256.IsHardwareAccelerated)
            {
                Vector256<float> v = Vector256.Abs(Vector256.LoadUnsafe(ref first, (nuint)start));
                return Vector256.GreaterThanOrEqual(v, Vector256.Create(_threshold)).ExtractMostSignificantBits();
            }
            if (Vector128.IsHardwareAccelerated)
            {
                var t = Vector128.Create(_threshold);
                uint lo = Vector128.GreaterThanOrEqual(Vector128.Abs(Vector128.LoadUnsafe(ref first, (nuint)start)), t).ExtractMostSignificantBits();
                uint hi = Vector128.GreaterThanOrEqual(Vector128.Abs(Vector128.LoadUnsafe(ref first, (nuint)(start + 4))), t).ExtractMostSignificantBits();
                return lo | (hi << 4);
            }
        }
        uint mask = 0;
        int end = Math.Min(start + 8, _values.Length);
        for (int i = start; i < end; i++)
        {
            if (MathF.Abs(_values[i]) >= _threshold)
            {
                mask |= 1u << (i - start);
            }
        }
        return mask;
    }
}

/// <summary>Hoare-partition quickselect with median-of-three pivots (nth_element).</summary>
public static class Quickselect
{
    /// <summary>Reorders <paramref name="values"/> so that position n holds the value a full sort would put
    /// there, smaller-or-equal values before it and greater-or-equal after it; returns that value.</summary>
    public static float KthSmallest(Span<float> values, int n)
    {
        if ((uint)n >= (uint)values.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(n), n, $"Selection index outside [0, {values.Length}).");
        }
        int lo = 0;
        int hi = values.Length - 1;
        while (lo < hi)
        {
            int mid = lo + ((hi - lo) / 2);
            if (values[mid] < values[lo])
            {
                (values[mid], values[lo]) = (values[lo], values[mid]);
            }
            if (values[hi] < values[lo])
            {
                (values[hi], values[lo]) = (values[lo], values[hi]);
            }
            if (values[hi] < values[mid])
            {
                (values[hi], values[mid]) = (values[mid], values[hi]);
            }
            float pivot = values[mid];
            int i = lo;
            int j = hi;
            while (i <= j)
            {
                while (values[i] < pivot)
                {
                    i++;
                }
                while (values[j] > pivot)
                {
                    j--;
                }
                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }
            if (n <= j)
            {
                hi = j;
            }
            else if (n >= i)
            {
                lo = i;
            }
            else
            {
                return values[n];
            }
        }
        return values[n];
    }
}
