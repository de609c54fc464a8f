using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Streaming majority vote over packed sign bits (signSGD with majority vote: Bernstein et al., "signSGD:
/// Compressed Optimisation for Non-Convex Problems", ICML 2018, and "signSGD with Majority Vote is Communication
/// Efficient and Fault Tolerant", ICLR 2019): vote[j] = sign(Σ_i sign(Δ_i[j])) ∈ {+1, −1, 0 on a tie}.
/// <para>
/// Packed layout, shared with the sign codec: byte k holds coordinates 8k..8k+7, least-significant bit first; a bit
/// is 1 when the coordinate is negative, 0 otherwise (so 0 counts as +1). With c[j] negative votes out of n,
/// Σ sign = n − 2c[j]: the vote is −1 when 2c &gt; n, 0 when 2c = n, +1 otherwise.
/// </para>
/// <para>
/// The per-coordinate counters c[j] are kept bit-sliced (a vertical popcount): plane p holds bit p of every
/// counter, 64 coordinates per word. Adding an update is a ripple-carry add of its bits into the planes
/// (plane ^= carry; carry &amp;= old plane), 256–512 coordinates per SIMD op and ⌈log₂(n+1)⌉ planes deep, so the
/// packed input is consumed at several GB/s on one core, with O(d·log n) bits of state and no allocation.
/// </para>
/// <example>
/// d = 3, updates [+, −, −], [−, −, +], [+, +, −] pack to bytes 0b110, 0b011, 0b100; negative counts c = [1, 2, 2]
/// out of n = 3, so the vote is [+1, −1, −1]. A fourth update [−, +, +] gives c = [2, 2, 2], n = 4: [0, 0, 0].
/// </example>
/// </summary>
public sealed class SignMajorityVoteAccumulator : IStreamingAggregator
{
    private readonly ulong[] _planes; // _maxPlanes planes of _words words
    private readonly int _words;
    private readonly int _maxPlanes;
    private int _activePlanes;

    /// <param name="dimension">d, coordinates per update.</param>
    /// <param name="capacity">Most updates per round; fixes the counter width up front so Add never allocates.</param>
    public SignMajorityVoteAccumulator(int dimension, int capacity = ushort.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Dimension = dimension;
        Capacity = capacity;
        _words = (dimension + 63) / 64;
        _maxPlanes = 32 - BitOperations.LeadingZeroCount((uint)capacity);
        _planes = new ulong[(long)_maxPlanes * _words];
    }

    public int Dimension { get; }

    public int Count { get; private set; }

    public int Capacity { get; }

    /// <summary>Bytes of one packed update: ⌈d/8⌉.</summary>
    public int PackedLength => (Dimension + 7) / 8;

    /// <summary>Adds one device's vote given as packed sign bits (see the layout above); bits past d are ignored.</summary>
    public void AddPacked(ReadOnlySpan<byte> packedSigns)
    {
        if (packedSigns.Length != PackedLength)
        {
            throw new InvalidUpdateException(null,
                $"the packed signs have {packedSigns.Length} bytes, expected {PackedLength} for {Dimension} coordinates");
        }

        Reserve();
        int fullWords = packedSigns.Length / 8;
        var words = MemoryMarshal.Cast<byte, ulong>(packedSigns[..(fullWords * 8)]);
        int w = RippleAdd(words, 0);
        if (w < _words)
        {
            // Last partial word: bytes beyond the input are zero ("positive"), masked off again in Complete.
            Span<ulong> tail = stackalloc ulong[1];
            tail[0] = 0;
            packedSigns[(fullWords * 8)..].CopyTo(MemoryMarshal.AsBytes(tail));
            RippleAdd(tail, w);
        }

        Count++;
    }

    /// <summary>Adds the signs of a float update (packing on the fly). Each device has one vote: weight must be 1.</summary>
    public void Add(ReadOnlySpan<float> update, float weight = 1f)
    {
        if (update.Length != Dimension)
        {
            throw new InvalidUpdateException(null, $"it has {update.Length} coordinates, expected {Dimension}");
        }

        if (weight != 1f)
        {
            throw new ArgumentException("A majority vote counts one vote per device; the weight must be 1.", nameof(weight));
        }

        int bad = UpdateValidator.IndexOfNonFinite(update);
        if (bad >= 0)
        {
            throw new InvalidUpdateException(null, UpdateValidator.DescribeNonFinite(update, bad));
        }

        Reserve();
        Span<ulong> chunk = stackalloc ulong[64];
        for (int start = 0; start < _words; start += chunk.Length)
        {
            int count = Math.Min(chunk.Length, _words - start);
            var part = chunk[..count];
            PackSigns(update.Slice(start * 64, Math.Min(count * 64, Dimension - (start * 64))), part);
            RippleAdd(part, start);
        }

        Count++;
    }

    /// <summary>Writes the vote: +1, −1, or 0 on a tie.</summary>
    public void Complete(Span<float> result)
    {
        if (result.Length != Dimension)
        {
            throw new ArgumentException($"The result has {result.Length} coordinates, expected {Dimension}.", nameof(result));
        }

        if (Count == 0)
        {
            throw new InvalidOperationException("No vote was added.");
        }

        int half = Count / 2;
        bool even = (Count & 1) == 0;
        for (int w = 0; w < _words; w++)
        {
            // Bit-sliced comparison of every counter c with ⌊n/2⌋, most significant plane first.
            ulong greater = 0, equal = ulong.MaxValue;
            for (int p = _activePlanes - 1; p >= 0; p--)
            {
                ulong plane = _planes[((long)p * _words) + w];
                if (((half >> p) & 1) == 0)
                {
                    greater |= equal & plane;
                    equal &= ~plane;
                }
                else
                {
                    equal &= plane;
                }
            }

            ulong tie = even ? equal : 0;
            int baseIndex = w * 64;
            int limit = Math.Min(64, Dimension - baseIndex);
            if (limit == 64 && Vector256.IsHardwareAccelerated)
            {
                // vote = 1 − 2·[2c > n] − [2c = n], eight coordinates per step from a byte → 8×{0, 1} table.
                ref float output = ref result[baseIndex];
                var one = Vector256<float>.One;
                for (int b = 0; b < 8; b++)
                {
                    var g = BitTable.Row((byte)(greater >> (8 * b)));
                    var t = BitTable.Row((byte)(tie >> (8 * b)));
                    (one - g - g - t).StoreUnsafe(ref output, (nuint)(8 * b));
                }

                continue;
            }

            var tail = result.Slice(baseIndex, limit);
            for (int b = 0; b < limit; b++)
            {
                // 2c > n ⇔ c > ⌊n/2⌋; 2c = n ⇔ n even and c = n/2.
                tail[b] = ((greater >> b) & 1) != 0 ? -1f : ((tie >> b) & 1) != 0 ? 0f : 1f;
            }
        }
    }

    /// <summary>Negative votes for coordinate <paramref name="index"/> so far (for diagnostics and tests).</summary>
    public int NegativeCount(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Dimension);
        int count = 0;
        for (int p = 0; p < _activePlanes; p++)
        {
            count |= (int)((_planes[((long)p * _words) + (index / 64)] >> (index % 64)) & 1) << p;
        }

        return count;
    }

    public void Reset()
    {
        Array.Clear(_planes);
        _activePlanes = 0;
        Count = 0;
    }

    /// <summary>Packs float signs into the shared layout: bit = 1 where x &lt; 0, LSB first.</summary>
    public static void PackSigns(ReadOnlySpan<float> values, Span<byte> packed)
    {
        if (packed.Length < (values.Length + 7) / 8)
        {
            throw new ArgumentException("The packed buffer is too small.", nameof(packed));
        }

        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= values.Length; i += 8)
            {
                packed[i / 8] = (byte)Vector256.LessThan(Vector256.Create(values.Slice(i, 8)), Vector256<float>.Zero)
                    .ExtractMostSignificantBits();
            }
        }

        for (; i < values.Length; i += 8)
        {
            int bits = 0;
            for (int b = 0; b < 8 && i + b < values.Length; b++)
            {
                bits |= values[i + b] < 0 ? 1 << b : 0;
            }

            packed[i / 8] = (byte)bits;
        }
    }

    private static void PackSigns(ReadOnlySpan<float> values, Span<ulong> words)
    {
        words.Clear();
        PackSigns(values, MemoryMarshal.AsBytes(words));
    }

    private void Reserve()
    {
        if (Count >= Capacity)
        {
            throw new InvalidOperationException($"The vote is full: it was sized for {Capacity} updates.");
        }

        // Counters must hold Count + 1 without overflowing the active planes.
        if ((Count + 1) >> _activePlanes != 0)
        {
            _activePlanes++;
        }
    }

    /// <summary>Ripple-carry adds one bit per coordinate into the bit-sliced counters, starting at word offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int RippleAdd(ReadOnlySpan<ulong> bits, int offset)
    {
        ref ulong planes = ref MemoryMarshal.GetArrayDataReference(_planes);
        ref ulong input = ref MemoryMarshal.GetReference(bits);
        int active = _activePlanes;
        nuint stride = (nuint)_words;
        int w = 0;

        // No early exit when the carry dies out: with random signs it survives ~log₂(256) planes anyway, and the
        // test would cost more than it saves.
        if (Vector512.IsHardwareAccelerated)
        {
            for (; w + 8 <= bits.Length; w += 8)
            {
                var carry = Vector512.LoadUnsafe(ref input, (nuint)w);
                nuint at = (nuint)(offset + w);
                for (int p = 0; p < active; p++, at += stride)
                {
                    var plane = Vector512.LoadUnsafe(ref planes, at);
                    (plane ^ carry).StoreUnsafe(ref planes, at);
                    carry &= plane;
                }
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            for (; w + 4 <= bits.Length; w += 4)
            {
                var carry = Vector256.LoadUnsafe(ref input, (nuint)w);
                nuint at = (nuint)(offset + w);
                for (int p = 0; p < active; p++, at += stride)
                {
                    var plane = Vector256.LoadUnsafe(ref planes, at);
                    (plane ^ carry).StoreUnsafe(ref planes, at);
                    carry &= plane;
                }
            }
        }

        for (; w < bits.Length; w++)
        {
            ulong carry = Unsafe.Add(ref input, w);
            nuint at = (nuint)(offset + w);
            for (int p = 0; p < active && carry != 0; p++, at += stride)
            {
                ulong plane = Unsafe.Add(ref planes, at);
                Unsafe.Add(ref planes, at) = plane ^ carry;
                carry &= plane;
            }
        }

        return offset + w;
    }

    /// <summary>Byte → its eight bits as floats 0/1, LSB first (8 KB).</summary>
    private static class BitTable
    {
        private static readonly float[] Table = Build();

        public static Vector256<float> Row(byte bits) => Vector256.LoadUnsafe(ref Table[bits * 8]);

        private static float[] Build()
        {
            var table = new float[256 * 8];
            for (int v = 0; v < 256; v++)
            {
                for (int b = 0; b < 8; b++)
                {
                    table[(v * 8) + b] = (v >> b) & 1;
                }
            }

            return table;
        }
    }
}
