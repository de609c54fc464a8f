using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Compression;

/// <summary>
/// Scaled sign compressor C(v) = (‖v_b‖₁ / |b|) · sign(v_b) per block b (algorithms.md §1; signSGD with
/// scale as in Karimireddy et al. 2019, "Error Feedback Fixes SignSGD and other Gradient Compression
/// Schemes"). Blocks are runs of at most <see cref="BlockSize"/> coordinates inside each tensor segment, so
/// one fp32 scale costs 32/B bits per coordinate (0.8 % at B = 4096).
/// <para>Payload: <c>[tag 'S'][version][varint d][varint B][varint segment count S][S varint segment
/// lengths][blockCount × fp32 scale][⌈d/8⌉ sign bytes]</c>. S = 0 means one segment of d coordinates.
/// Sign bytes (fixed layout, read directly by the sign-vote aggregator): byte k holds coordinates
/// 8k..8k+7, least-significant bit first; a bit is 1 when the coordinate's IEEE sign bit is set
/// (negative, or −0), else 0. Padding bits after coordinate d−1 are 0. A 0 bit decodes to +scale,
/// a 1 bit to −scale.</para>
/// </summary>
public sealed class SignCodec : IUpdateCodec
{
    public const byte PayloadTag = (byte)'S';
    public const int DefaultBlockSize = 4096;

    private readonly int[]? _segments;

    /// <param name="blockSize">Coordinates per scale (B).</param>
    /// <param name="segmentLengths">Tensor lengths of the flat vector; blocks never straddle two tensors.
    /// Null: the whole vector is one segment.</param>
    public SignCodec(int blockSize = DefaultBlockSize, IReadOnlyList<int>? segmentLengths = null)
    {
        if (blockSize < 1 || blockSize > PayloadHeader.MaxDimension)
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "The sign block size must be in [1, 2^28].");
        }
        BlockSize = blockSize;
        if (segmentLengths is { Count: > 0 })
        {
            long total = 0;
            foreach (int length in segmentLengths)
            {
                if (length < 1)
                {
                    throw new ArgumentOutOfRangeException(nameof(segmentLengths), length, "Tensor segment lengths must be positive.");
                }
                total += length;
            }
            if (total > PayloadHeader.MaxDimension)
            {
                throw new ArgumentOutOfRangeException(nameof(segmentLengths), total, "The segments exceed the dimension limit.");
            }
            _segments = [.. segmentLengths];
        }
    }

    public static SignCodec Default { get; } = new();

    public int BlockSize { get; }

    /// <summary>Tensor segment lengths, or empty when the vector is a single segment.</summary>
    public ReadOnlySpan<int> SegmentLengths => _segments;

    public string Id => "sign";

    public string Spec => $"sign:block={BlockSize}";

    public byte Tag => PayloadTag;

    /// <summary>Same block size, with tensor boundaries (e.g. from the model's parameter list).</summary>
    public SignCodec WithSegments(IReadOnlyList<int> segmentLengths) => new(BlockSize, segmentLengths);

    public int MaxEncodedSize(int dimension)
    {
        long size = EncodedSize(dimension, BlockCount(dimension));
        return size > int.MaxValue ? int.MaxValue : (int)size;
    }

    /// <summary>Exact encoded size for this codec's segments (or one segment) of d coordinates.</summary>
    public long EncodedSize(int dimension, long blockCount)
    {
        long header = PayloadHeader.Length(dimension) + Varint.Length((ulong)BlockSize) + Varint.Length((ulong)(_segments?.Length ?? 0));
        if (_segments is not null)
        {
            foreach (int length in _segments)
            {
                header += Varint.Length((ulong)length);
            }
        }
        return header + (4 * blockCount) + ((dimension + 7L) / 8);
    }

    private long BlockCount(int dimension)
    {
        if (_segments is null)
        {
            return (dimension + (long)BlockSize - 1) / BlockSize;
        }
        long blocks = 0;
        foreach (int length in _segments)
        {
            blocks += (length + (long)BlockSize - 1) / BlockSize;
        }
        return blocks;
    }

    public int Encode(ReadOnlySpan<float> values, Span<byte> destination)
    {
        int d = values.Length;
        if (_segments is not null && d != SumOf(_segments))
        {
            throw new ArgumentException($"The vector has {d} coordinates but the sign codec's tensor segments sum to {SumOf(_segments)}.", nameof(values));
        }
        long blockCount = BlockCount(d);
        long size = EncodedSize(d, blockCount);
        PayloadHeader.EnsureEncodable(d, size > int.MaxValue ? int.MaxValue : (int)size, destination.Length);
        FloatKernels.EnsureFinite(values, nameof(values));

        int offset = PayloadHeader.Write(destination, PayloadTag, d);
        offset += Varint.Write(destination[offset..], (ulong)BlockSize);
        offset += Varint.Write(destination[offset..], (ulong)(_segments?.Length ?? 0));
        if (_segments is not null)
        {
            foreach (int length in _segments)
            {
                offset += Varint.Write(destination[offset..], (ulong)length);
            }
        }

        Span<byte> scaleBytes = destination.Slice(offset, (int)(4 * blockCount));
        var blocks = new BlockEnumerator(d, BlockSize, _segments);
        int b = 0;
        while (blocks.MoveNext(out int start, out int length))
        {
            float scale = BlockScale(values.Slice(start, length));
            BinaryPrimitives.WriteSingleLittleEndian(scaleBytes[(4 * b)..], scale);
            b++;
        }
        offset += scaleBytes.Length;

        int bitBytes = (d + 7) / 8;
        PackSignBits(values, destination.Slice(offset, bitBytes));
        return offset + bitBytes;
    }

    public PayloadCheck Validate(ReadOnlySpan<byte> encoded, out int dimension)
    {
        PayloadCheck check = SignPayload.TryParse(encoded, out SignPayload payload);
        dimension = check.IsValid ? payload.Dimension : 0;
        return check;
    }

    public PayloadCheck Decode(ReadOnlySpan<byte> encoded, Span<float> destination)
    {
        PayloadCheck check = Parse(encoded, destination.Length, out SignPayload payload);
        if (check.IsValid)
        {
            payload.Decode(destination);
        }
        return check;
    }

    /// <summary>Adds ±weight·scale per coordinate straight from the packed bits: no decoded vector is written or read.</summary>
    public PayloadCheck DecodeAdd(ReadOnlySpan<byte> encoded, float weight, Span<float> accumulator)
    {
        PayloadCheck check = Parse(encoded, accumulator.Length, out SignPayload payload);
        if (check.IsValid)
        {
            payload.AddTo(weight, accumulator);
        }
        return check;
    }

    /// <summary>Validates the payload and that it has as many coordinates as the span it goes into.</summary>
    private PayloadCheck Parse(ReadOnlySpan<byte> encoded, int targetLength, out SignPayload payload)
    {
        PayloadCheck check = SignPayload.TryParse(encoded, out payload);
        return check.IsValid ? PayloadHeader.ExpectDimension(payload.Dimension, targetLength, Id) : check;
    }

    /// <summary>‖v‖₁/len; the float sum of huge finite values can overflow, so fall back to a double sum.</summary>
    private static float BlockScale(ReadOnlySpan<float> block)
    {
        float sum = TensorPrimitives.SumOfMagnitudes(block);
        if (float.IsFinite(sum))
        {
            return sum / block.Length;
        }
        double exact = 0;
        foreach (float value in block)
        {
            exact += Math.Abs(value);
        }
        return (float)(exact / block.Length);
    }

    private static int SumOf(int[] lengths)
    {
        long sum = 0;
        foreach (int length in lengths)
        {
            sum += length;
        }
        return (int)sum;
    }

    /// <summary>Packs IEEE sign bits, 8 coordinates per byte, LSB first (MoveMask on 256/128-bit vectors).</summary>
    public static void PackSignBits(ReadOnlySpan<float> values, Span<byte> bits)
    {
        int d = values.Length;
        if (bits.Length < (d + 7) / 8)
        {
            throw new ArgumentException($"{bits.Length} bytes cannot hold {d} sign bits.", nameof(bits));
        }
        ref float src = ref MemoryMarshal.GetReference(values);
        int fullBytes = d / 8;
        int k = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; k + 4 <= fullBytes; k += 4)
            {
                uint m0 = Vector256.LoadUnsafe(ref src, (nuint)(8 * k)).ExtractMostSignificantBits();
                uint m1 = Vector256.LoadUnsafe(ref src, (nuint)(8 * k + 8)).ExtractMostSignificantBits();
                uint m2 = Vector256.LoadUnsafe(ref src, (nuint)(8 * k + 16)).ExtractMostSignificantBits();
                uint m3 = Vector256.LoadUnsafe(ref src, (nuint)(8 * k + 24)).ExtractMostSignificantBits();
                BinaryPrimitives.WriteUInt32LittleEndian(bits[k..], m0 | (m1 << 8) | (m2 << 16) | (m3 << 24));
            }
            for (; k < fullBytes; k++)
            {
                bits[k] = (byte)Vector256.LoadUnsafe(ref src, (nuint)(8 * k)).ExtractMostSignificantBits();
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; k < fullBytes; k++)
            {
                uint lo = Vector128.LoadUnsafe(ref src, (nuint)(8 * k)).ExtractMostSignificantBits();
                uint hi = Vector128.LoadUnsafe(ref src, (nuint)(8 * k + 4)).ExtractMostSignificantBits();
                bits[k] = (byte)(lo | (hi << 4));
            }
        }
        ReadOnlySpan<uint> raw = MemoryMarshal.Cast<float, uint>(values);
        for (; k < (d + 7) / 8; k++)
        {
            int b = 0;
            int end = Math.Min(8, d - (8 * k));
            for (int j = 0; j < end; j++)
            {
                b |= (int)(raw[(8 * k) + j] >> 31) << j;
            }
            bits[k] = (byte)b;
        }
    }

    /// <summary>Writes ±<paramref name="scale"/> for coordinates [start, start+length) from packed sign bits.</summary>
    public static void UnpackSignBits(ReadOnlySpan<byte> bits, int start, int length, float scale, Span<float> destination) =>
        ExpandSignBits(bits, start, length, scale, destination, accumulate: false);

    /// <summary>
    /// Writes (or, with <paramref name="accumulate"/>, adds) ±<paramref name="scale"/> for coordinates [start, start+length):
    /// one kernel for decoding and for summing; the flag is loop-invariant, so its branch costs nothing next to the memory traffic.
    /// </summary>
    internal static void ExpandSignBits(ReadOnlySpan<byte> bits, int start, int length, float scale, Span<float> destination, bool accumulate)
    {
        if (start < 0 || length < 0 || (long)start + length > destination.Length || (long)start + length > 8L * bits.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"Coordinates [{start}, {(long)start + length}) do not fit {destination.Length} floats and {bits.Length} sign bytes.");
        }
        int i = start;
        int end = start + length;
        float negative = -scale;
        ref float dst = ref MemoryMarshal.GetReference(destination);
        while (i < end && (i & 7) != 0)
        {
            Set(ref Unsafe.Add(ref dst, i), ((bits[i >> 3] >> (i & 7)) & 1) != 0 ? negative : scale, accumulate);
            i++;
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var lanes = Vector256.Create(1, 2, 4, 8, 16, 32, 64, 128);
            var pos = Vector256.Create(scale);
            var neg = Vector256.Create(negative);
            for (; i + 8 <= end; i += 8)
            {
                Vector256<int> clear = Vector256.Equals(Vector256.Create((int)bits[i >> 3]) & lanes, Vector256<int>.Zero);
                Vector256<float> signed = Vector256.ConditionalSelect(clear.AsSingle(), pos, neg);
                (accumulate ? signed + Vector256.LoadUnsafe(ref dst, (nuint)i) : signed).StoreUnsafe(ref dst, (nuint)i);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var lanesLo = Vector128.Create(1, 2, 4, 8);
            var lanesHi = Vector128.Create(16, 32, 64, 128);
            var pos = Vector128.Create(scale);
            var neg = Vector128.Create(negative);
            for (; i + 8 <= end; i += 8)
            {
                var b = Vector128.Create((int)bits[i >> 3]);
                Vector128<float> lo = Vector128.ConditionalSelect(Vector128.Equals(b & lanesLo, Vector128<int>.Zero).AsSingle(), pos, neg);
                Vector128<float> hi = Vector128.ConditionalSelect(Vector128.Equals(b & lanesHi, Vector128<int>.Zero).AsSingle(), pos, neg);
                (accumulate ? lo + Vector128.LoadUnsafe(ref dst, (nuint)i) : lo).StoreUnsafe(ref dst, (nuint)i);
                (accumulate ? hi + Vector128.LoadUnsafe(ref dst, (nuint)(i + 4)) : hi).StoreUnsafe(ref dst, (nuint)(i + 4));
            }
        }
        for (; i < end; i++)
        {
            Set(ref Unsafe.Add(ref dst, i), ((bits[i >> 3] >> (i & 7)) & 1) != 0 ? negative : scale, accumulate);
        }

        static void Set(ref float target, float value, bool accumulate) => target = accumulate ? target + value : value;
    }
}

/// <summary>Walks the blocks of a sign payload: each segment cut into runs of at most B coordinates.</summary>
public ref struct BlockEnumerator
{
    private readonly int _dimension;
    private readonly int _blockSize;
    private readonly ReadOnlySpan<int> _segments;
    private readonly ReadOnlySpan<byte> _segmentVarints;
    private readonly bool _single;
    private int _segmentIndex;
    private int _varintOffset;
    private int _segmentStart;
    private int _segmentLength;
    private int _offsetInSegment;

    public BlockEnumerator(int dimension, int blockSize, ReadOnlySpan<int> segments)
    {
        _dimension = dimension;
        _blockSize = blockSize;
        _segments = segments;
        _single = segments.IsEmpty;
    }

    /// <summary>Over segment lengths stored as validated varints (from a payload).</summary>
    internal BlockEnumerator(int dimension, int blockSize, ReadOnlySpan<byte> segmentVarints, int segmentCount)
    {
        _dimension = dimension;
        _blockSize = blockSize;
        _segmentVarints = segmentVarints;
        _single = segmentCount == 0;
    }

    public bool MoveNext(out int start, out int length)
    {
        while (_offsetInSegment >= _segmentLength)
        {
            _segmentStart += _segmentLength;
            _offsetInSegment = 0;
            if (!TryNextSegment(out _segmentLength))
            {
                _segmentLength = 0;
                start = length = 0;
                return false;
            }
        }
        start = _segmentStart + _offsetInSegment;
        length = Math.Min(_blockSize, _segmentLength - _offsetInSegment);
        _offsetInSegment += length;
        return true;
    }

    private bool TryNextSegment(out int length)
    {
        length = 0;
        if (_single)
        {
            if (_segmentIndex++ > 0)
            {
                return false;
            }
            length = _dimension;
            return true;
        }
        if (!_segments.IsEmpty)
        {
            if (_segmentIndex >= _segments.Length)
            {
                return false;
            }
            length = _segments[_segmentIndex++];
            return true;
        }
        if (_varintOffset >= _segmentVarints.Length)
        {
            return false;
        }
        Varint.TryRead(_segmentVarints[_varintOffset..], out ulong value, out int n);
        _varintOffset += n;
        length = (int)value;
        return true;
    }
}

/// <summary>A validated view of a sign payload, for decoding or for aggregating directly on packed bits.</summary>
public readonly ref struct SignPayload
{
    private readonly ReadOnlySpan<byte> _segmentVarints;

    private SignPayload(int dimension, int blockSize, int segmentCount, ReadOnlySpan<byte> segmentVarints, ReadOnlySpan<float> scales, ReadOnlySpan<byte> bits)
    {
        Dimension = dimension;
        BlockSize = blockSize;
        SegmentCount = segmentCount;
        _segmentVarints = segmentVarints;
        Scales = scales;
        Bits = bits;
    }

    public int Dimension { get; }

    public int BlockSize { get; }

    /// <summary>Number of tensor segments written in the payload (0 = one segment of d).</summary>
    public int SegmentCount { get; }

    /// <summary>One non-negative finite scale per block, in block order.</summary>
    public ReadOnlySpan<float> Scales { get; }

    /// <summary>⌈d/8⌉ packed sign bytes, layout as documented on <see cref="SignCodec"/>.</summary>
    public ReadOnlySpan<byte> Bits { get; }

    public BlockEnumerator GetBlocks() => new(Dimension, BlockSize, _segmentVarints, SegmentCount);

    /// <summary>Writes the decoded vector; <paramref name="destination"/> must hold <see cref="Dimension"/> floats.</summary>
    public void Decode(Span<float> destination) => Expand(1f, destination, accumulate: false);

    /// <summary>
    /// <paramref name="accumulator"/> += <paramref name="weight"/> · decoded vector, without writing it: each block adds
    /// ±(weight·scale), so a sum costs one pass over the accumulator and ⌈d/8⌉ bytes of bits.
    /// </summary>
    public void AddTo(float weight, Span<float> accumulator) => Expand(weight, accumulator, accumulate: true);

    private void Expand(float weight, Span<float> target, bool accumulate)
    {
        BlockEnumerator blocks = GetBlocks();
        int b = 0;
        while (blocks.MoveNext(out int start, out int length))
        {
            SignCodec.ExpandSignBits(Bits, start, length, Scales[b++] * weight, target, accumulate);
        }
    }

    /// <summary>Parses and fully validates untrusted bytes (structure, sizes, finite non-negative scales, zero padding).</summary>
    public static PayloadCheck TryParse(ReadOnlySpan<byte> encoded, out SignPayload payload)
    {
        const string Id = "sign";
        payload = default;
        PayloadCheck check = PayloadHeader.Read(encoded, SignCodec.PayloadTag, Id, out int d, out int offset);
        if (!check.IsValid)
        {
            return check;
        }
        if (!Varint.TryRead(encoded[offset..], out ulong blockSize, out int n) || blockSize < 1 || blockSize > PayloadHeader.MaxDimension)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, "sign payload has a bad block size.");
        }
        offset += n;
        if (!Varint.TryRead(encoded[offset..], out ulong segmentCount, out n) || segmentCount > (ulong)Math.Max(d, 0))
        {
            return PayloadCheck.Fail(PayloadError.Malformed, "sign payload has a bad segment count.");
        }
        offset += n;
        int segmentsStart = offset;
        long blocks = 0;
        long total = 0;
        for (ulong s = 0; s < segmentCount; s++)
        {
            if (!Varint.TryRead(encoded[offset..], out ulong length, out n))
            {
                return PayloadCheck.Fail(PayloadError.Truncated, $"sign payload ends inside segment length {s}.");
            }
            if (length < 1 || length > (ulong)d)
            {
                return PayloadCheck.Fail(PayloadError.Malformed, $"sign segment {s} has length {length}.");
            }
            offset += n;
            total += (long)length;
            blocks += ((long)length + (long)blockSize - 1) / (long)blockSize;
        }
        if (segmentCount == 0)
        {
            total = d;
            blocks = (d + (long)blockSize - 1) / (long)blockSize;
        }
        if (total != d)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, $"sign segments sum to {total}, not the dimension {d}.");
        }
        ReadOnlySpan<byte> segmentVarints = encoded[segmentsStart..offset];
        long bitBytes = (d + 7L) / 8;
        check = PayloadHeader.ExpectLength(encoded.Length, offset + (4 * blocks) + bitBytes, Id);
        if (!check.IsValid)
        {
            return check;
        }
        ReadOnlySpan<float> scales = MemoryMarshal.Cast<byte, float>(encoded.Slice(offset, (int)(4 * blocks)));
        ReadOnlySpan<byte> bits = encoded.Slice(offset + (int)(4 * blocks), (int)bitBytes);
        int bad = FloatKernels.IndexOfNonFinite(scales);
        if (bad >= 0)
        {
            return PayloadCheck.Fail(PayloadError.NonFinite, $"sign scale {bad} is not finite.");
        }
        foreach (float scale in scales)
        {
            if (scale < 0)
            {
                return PayloadCheck.Fail(PayloadError.Malformed, "sign payload has a negative scale.");
            }
        }
        if ((d & 7) != 0 && (bits[^1] >> (d & 7)) != 0)
        {
            return PayloadCheck.Fail(PayloadError.Malformed, "sign payload has non-zero padding bits.");
        }
        payload = new SignPayload(d, (int)blockSize, (int)segmentCount, segmentVarints, scales, bits);
        return PayloadCheck.Valid;
    }
}
