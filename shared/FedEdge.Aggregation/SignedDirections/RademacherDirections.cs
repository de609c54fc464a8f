using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Security.Cryptography;

namespace FedEdge.Aggregation.SignedDirections;

/// <summary>
/// FAR-SIGN's directions (algorithms.md §4 [design], FedEdge's realisation of arXiv 2605.09337): u_k ∈ {±1}^d/√d,
/// Rademacher, regenerated on both sides from (work seed, device id, index k) so a direction costs nothing on the wire.
/// <para>
/// The generator is our own and fixed, because an edge device (arm64) and the cloud (x64) must produce the same bits
/// for every version ever published: never <see cref="Random"/>, whose algorithm is not a contract. It is counter-based
/// SplitMix64 (Steele, Lea, Flood 2014; Vigna's finaliser): the device key is the finaliser of the work seed mixed with
/// FNV-1a-64 of the device id's UTF-16 code units; direction k's stream key is Mix(deviceKey + (k + 1)·γ₂); its word j
/// is Mix(streamKey + (j + 1)·γ). Bit i of word j is coordinate 64j + i: 1 means −1/√d, 0 means +1/√d. A change of any
/// of this breaks every device in the field; the golden vector in the tests pins it.
/// </para>
/// <para>
/// The kernels read the signs 8 at a time from a table of sign-bit masks and flip the float's sign bit (XOR), so a
/// direction is never expanded to d floats and nothing is allocated per direction: 8 lanes at once where 256-bit
/// vectors are accelerated (x64 AVX2), two 4-lane halves elsewhere (arm64 NEON). Element-wise results are the same on
/// both paths; a dot product's summation order differs, which only a device reads (for a sign).
/// </para>
/// </summary>
public static class RademacherDirections
{
    /// <summary>SplitMix64's increment (the golden ratio in 64 bits).</summary>
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>A second odd increment that spaces the streams of successive directions.</summary>
    private const ulong StreamGamma = 0xD1B54A32D192ED03UL;

    private const ulong FnvOffset = 0xCBF29CE484222325UL;
    private const ulong FnvPrime = 0x100000001B3UL;

    /// <summary>Sign-bit masks of the 8 coordinates a byte of signs holds: entry 8b + i is 0x80000000 when bit i of b is set.</summary>
    private static readonly uint[] ByteMasks = BuildByteMasks();

    /// <summary>Words of 64 signs a direction of <paramref name="dimension"/> coordinates takes.</summary>
    public static int WordCount(int dimension) => (dimension + 63) >> 6;

    /// <summary>The SplitMix64 finaliser (Vigna's "Mix13" variant of Stafford's constants).</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// The per-version work seed the server publishes with version <paramref name="version"/> (ModelAnnouncement
    /// field work_seed): the first 8 bytes, little-endian, of SHA-256("fededge/far-sign/work-seed" ‖ secret LE64 ‖
    /// version LE64). A hash rather than a mix, so the seeds of consecutive versions are unrelated and a device that
    /// knows some work seeds learns nothing about the federation secret or the seeds of versions not yet published.
    /// </summary>
    public static ulong WorkSeed(ulong federationSeed, long version)
    {
        ReadOnlySpan<byte> label = "fededge/far-sign/work-seed"u8;
        Span<byte> input = stackalloc byte[label.Length + 16];
        label.CopyTo(input);
        BinaryPrimitives.WriteUInt64LittleEndian(input[label.Length..], federationSeed);
        BinaryPrimitives.WriteInt64LittleEndian(input[(label.Length + 8)..], version);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input, hash);
        return BinaryPrimitives.ReadUInt64LittleEndian(hash);
    }

    /// <summary>The key of a device's directions under <paramref name="workSeed"/>.</summary>
    public static ulong DeviceKey(ulong workSeed, string deviceId)
    {
        ArgumentNullException.ThrowIfNull(deviceId);
        ulong hash = FnvOffset;
        foreach (char c in deviceId)
        {
            hash = (hash ^ (byte)c) * FnvPrime;
            hash = (hash ^ (byte)(c >> 8)) * FnvPrime;
        }

        return Mix(workSeed ^ Mix(hash + Gamma));
    }

    /// <summary>Writes direction <paramref name="index"/>'s signs (<see cref="WordCount"/> words; bits past d are unused).</summary>
    public static void Generate(ulong deviceKey, long index, Span<ulong> words)
    {
        ulong stream = Mix(deviceKey + (ulong)(index + 1) * StreamGamma);
        for (int j = 0; j < words.Length; j++)
        {
            words[j] = Mix(stream + (ulong)(j + 1) * Gamma);
        }
    }

    /// <summary>Writes u = signs/√d into <paramref name="direction"/> (tests and references; the kernels never expand it).</summary>
    public static void CopyTo(ReadOnlySpan<ulong> words, Span<float> direction)
    {
        direction.Clear();
        MultiplyAdd(words, 1f, direction);
    }

    /// <summary>⟨u, v⟩ with u the direction of <paramref name="words"/> and d = <paramref name="vector"/>'s length.</summary>
    public static double Dot(ReadOnlySpan<ulong> words, ReadOnlySpan<float> vector)
    {
        int d = vector.Length;
        CheckWords(words, d);
        var bytes = MemoryMarshal.AsBytes(words);
        ref uint masks = ref MemoryMarshal.GetArrayDataReference(ByteMasks);
        ref float v = ref MemoryMarshal.GetReference(vector);
        int full = d >> 3;
        double sum;
        if (Vector256.IsHardwareAccelerated)
        {
            // x64 with AVX2: one 8-lane mask per byte of signs.
            var sum8 = Vector256<float>.Zero;
            for (int b = 0; b < full; b++)
            {
                ref uint m = ref Unsafe.Add(ref masks, bytes[ByteOf(b)] << 3);
                sum8 += (Vector256.LoadUnsafe(ref v, (nuint)(b << 3)).AsUInt32() ^ Vector256.LoadUnsafe(ref m)).AsSingle();
            }

            sum = Vector256.Sum(sum8);
        }
        else
        {
            var sum0 = Vector128<float>.Zero;
            var sum1 = Vector128<float>.Zero;
            for (int b = 0; b < full; b++)
            {
                ref uint m = ref Unsafe.Add(ref masks, bytes[ByteOf(b)] << 3);
                var lo = Vector128.LoadUnsafe(ref v, (nuint)(b << 3)).AsUInt32() ^ Vector128.LoadUnsafe(ref m);
                var hi = Vector128.LoadUnsafe(ref v, (nuint)((b << 3) + 4)).AsUInt32() ^ Vector128.LoadUnsafe(ref m, 4);
                sum0 += lo.AsSingle();
                sum1 += hi.AsSingle();
            }

            sum = Vector128.Sum(sum0 + sum1);
        }

        for (int i = full << 3; i < d; i++)
        {
            sum += IsNegative(words, i) ? -vector[i] : vector[i];
        }

        return sum / Math.Sqrt(d);
    }

    /// <summary>target ← target + scale·u (d = <paramref name="target"/>'s length).</summary>
    public static void MultiplyAdd(ReadOnlySpan<ulong> words, float scale, Span<float> target)
    {
        int d = target.Length;
        CheckWords(words, d);
        var bytes = MemoryMarshal.AsBytes(words);
        float c = (float)(scale / Math.Sqrt(d));
        var cv = Vector128.Create(c).AsUInt32();
        ref uint masks = ref MemoryMarshal.GetArrayDataReference(ByteMasks);
        ref float t = ref MemoryMarshal.GetReference(target);
        int full = d >> 3;
        if (Vector256.IsHardwareAccelerated)
        {
            var cv8 = Vector256.Create(c).AsUInt32();
            for (int b = 0; b < full; b++)
            {
                ref uint m = ref Unsafe.Add(ref masks, bytes[ByteOf(b)] << 3);
                nuint at = (nuint)(b << 3);
                (Vector256.LoadUnsafe(ref t, at) + (cv8 ^ Vector256.LoadUnsafe(ref m)).AsSingle()).StoreUnsafe(ref t, at);
            }
        }
        else
        {
            for (int b = 0; b < full; b++)
            {
                ref uint m = ref Unsafe.Add(ref masks, bytes[ByteOf(b)] << 3);
                nuint at = (nuint)(b << 3);
                (Vector128.LoadUnsafe(ref t, at) + (cv ^ Vector128.LoadUnsafe(ref m)).AsSingle()).StoreUnsafe(ref t, at);
                (Vector128.LoadUnsafe(ref t, at + 4) + (cv ^ Vector128.LoadUnsafe(ref m, 4)).AsSingle()).StoreUnsafe(ref t, at + 4);
            }
        }

        for (int i = full << 3; i < d; i++)
        {
            target[i] += IsNegative(words, i) ? -c : c;
        }
    }

    /// <summary>a ← a + scaleA·u and b ← b + scaleB·u in one pass over the signs (the two-timescale rule's accumulators).</summary>
    public static void MultiplyAdd(ReadOnlySpan<ulong> words, float scaleA, Span<float> a, float scaleB, Span<float> b)
    {
        int d = a.Length;
        if (b.Length != d)
        {
            throw new ArgumentException($"The accumulators have {a.Length} and {b.Length} coordinates.", nameof(b));
        }

        CheckWords(words, d);
        var bytes = MemoryMarshal.AsBytes(words);
        double root = Math.Sqrt(d);
        float ca = (float)(scaleA / root);
        float cb = (float)(scaleB / root);
        var va = Vector128.Create(ca).AsUInt32();
        var vb = Vector128.Create(cb).AsUInt32();
        ref uint masks = ref MemoryMarshal.GetArrayDataReference(ByteMasks);
        ref float ra = ref MemoryMarshal.GetReference(a);
        ref float rb = ref MemoryMarshal.GetReference(b);
        int full = d >> 3;
        if (Vector256.IsHardwareAccelerated)
        {
            var va8 = Vector256.Create(ca).AsUInt32();
            var vb8 = Vector256.Create(cb).AsUInt32();
            for (int k = 0; k < full; k++)
            {
                var m8 = Vector256.LoadUnsafe(ref Unsafe.Add(ref masks, bytes[ByteOf(k)] << 3));
                nuint at = (nuint)(k << 3);
                (Vector256.LoadUnsafe(ref ra, at) + (va8 ^ m8).AsSingle()).StoreUnsafe(ref ra, at);
                (Vector256.LoadUnsafe(ref rb, at) + (vb8 ^ m8).AsSingle()).StoreUnsafe(ref rb, at);
            }

        }
        else
        {
            for (int k = 0; k < full; k++)
            {
                ref uint m = ref Unsafe.Add(ref masks, bytes[ByteOf(k)] << 3);
                var m0 = Vector128.LoadUnsafe(ref m);
                var m1 = Vector128.LoadUnsafe(ref m, 4);
                nuint at = (nuint)(k << 3);
                (Vector128.LoadUnsafe(ref ra, at) + (va ^ m0).AsSingle()).StoreUnsafe(ref ra, at);
                (Vector128.LoadUnsafe(ref ra, at + 4) + (va ^ m1).AsSingle()).StoreUnsafe(ref ra, at + 4);
                (Vector128.LoadUnsafe(ref rb, at) + (vb ^ m0).AsSingle()).StoreUnsafe(ref rb, at);
                (Vector128.LoadUnsafe(ref rb, at + 4) + (vb ^ m1).AsSingle()).StoreUnsafe(ref rb, at + 4);
            }
        }

        for (int i = full << 3; i < d; i++)
        {
            bool negative = IsNegative(words, i);
            a[i] += negative ? -ca : ca;
            b[i] += negative ? -cb : cb;
        }
    }

    /// <summary>Whether coordinate <paramref name="i"/> of the direction is −1/√d.</summary>
    public static bool IsNegative(ReadOnlySpan<ulong> words, int i) => ((words[i >> 6] >> (i & 63)) & 1UL) != 0;

    /// <summary>The byte of the words (as stored) that holds coordinates 8b … 8b + 7: the words are little-endian
    /// integers, so on a big-endian machine the bytes of a word are read from the other end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ByteOf(int b) => BitConverter.IsLittleEndian ? b : (b & ~7) | (7 - (b & 7));

    private static void CheckWords(ReadOnlySpan<ulong> words, int dimension)
    {
        if (words.Length < WordCount(dimension))
        {
            throw new ArgumentException($"{words.Length} words hold {words.Length * 64} signs; the vector has {dimension} coordinates.", nameof(words));
        }
    }

    private static uint[] BuildByteMasks()
    {
        var masks = new uint[256 * 8];
        for (int b = 0; b < 256; b++)
        {
            for (int i = 0; i < 8; i++)
            {
                masks[(b << 3) + i] = ((b >> i) & 1) != 0 ? 0x80000000u : 0u;
            }
        }

        return masks;
    }
}
