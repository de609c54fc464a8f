using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FedEdge.Aggregation.Kernels;

/// <summary>
/// The few lane-wise operations the sorting-network kernels need, over one SIMD width. Kernels are generic over a
/// struct implementing this, so the JIT emits a specialised copy per width: 512-bit where the CPU has AVX-512
/// (16 columns per op), otherwise Vector&lt;float&gt; (8 with AVX2, 4 with NEON).
/// </summary>
internal interface ISimdLanes<TVector>
    where TVector : struct
{
    static abstract int Count { get; }

    static abstract TVector Load(ref float source);

    static abstract void Store(TVector value, ref float destination);

    static abstract TVector Min(TVector a, TVector b);

    static abstract TVector Max(TVector a, TVector b);

    static abstract TVector Add(TVector a, TVector b);

    static abstract TVector Scale(TVector a, float factor);
}

internal readonly struct Vector512Lanes : ISimdLanes<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(ref float source) => Vector512.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector512<float> value, ref float destination) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Min(Vector512<float> a, Vector512<float> b) => Vector512.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Scale(Vector512<float> a, float factor) => a * factor;
}

internal readonly struct VectorLanes : ISimdLanes<Vector<float>>
{
    public static int Count => Vector<float>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Load(ref float source) => Vector.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector<float> value, ref float destination) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Min(Vector<float> a, Vector<float> b) => Vector.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Max(Vector<float> a, Vector<float> b) => Vector.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Add(Vector<float> a, Vector<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Scale(Vector<float> a, float factor) => a * factor;
}

internal static class SimdSpan
{
    public static ref float At(Span<float> span, int index) => ref Unsafe.Add(ref MemoryMarshal.GetReference(span), index);
}
