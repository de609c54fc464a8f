using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Compression;

/// <summary>Vectorised scans shared by the codecs: finiteness checks of fp32 and fp16 data.</summary>
public static class FloatKernels
{
    private const uint Fp32Exponent = 0x7F80_0000u;
    private const ushort Fp16Exponent = 0x7C00;

    /// <summary>Index of the first NaN or ±infinity, or -1 when every value is finite.</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        ReadOnlySpan<uint> bits = MemoryMarshal.Cast<float, uint>(values);
        ref uint start = ref MemoryMarshal.GetReference(bits);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(Fp32Exponent);
            for (; i <= bits.Length - Vector256<uint>.Count; i += Vector256<uint>.Count)
            {
                if (Vector256.EqualsAny(Vector256.LoadUnsafe(ref start, (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var mask = Vector128.Create(Fp32Exponent);
            for (; i <= bits.Length - Vector128<uint>.Count; i += Vector128<uint>.Count)
            {
                if (Vector128.EqualsAny(Vector128.LoadUnsafe(ref start, (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        for (; i < bits.Length; i++)
        {
            if ((Unsafe.Add(ref start, i) & Fp32Exponent) == Fp32Exponent)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>Index of the first fp16 NaN or ±infinity among little-endian halves, or -1.</summary>
    public static int IndexOfNonFiniteHalf(ReadOnlySpan<ushort> halves)
    {
        ref ushort start = ref MemoryMarshal.GetReference(halves);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(Fp16Exponent);
            for (; i <= halves.Length - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
            {
                if (Vector256.EqualsAny(Vector256.LoadUnsafe(ref start, (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var mask = Vector128.Create(Fp16Exponent);
            for (; i <= halves.Length - Vector128<ushort>.Count; i += Vector128<ushort>.Count)
            {
                if (Vector128.EqualsAny(Vector128.LoadUnsafe(ref start, (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        for (; i < halves.Length; i++)
        {
            if ((Unsafe.Add(ref start, i) & Fp16Exponent) == Fp16Exponent)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>Throws a clear <see cref="ArgumentException"/> when an input vector holds NaN/∞.</summary>
    public static void EnsureFinite(ReadOnlySpan<float> values, string parameterName)
    {
        int bad = IndexOfNonFinite(values);
        if (bad >= 0)
        {
            throw new ArgumentException($"Coordinate {bad} is {values[bad]}; updates must be finite.", parameterName);
        }
    }
}
