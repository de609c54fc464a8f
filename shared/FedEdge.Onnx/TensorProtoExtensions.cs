using System.Runtime.InteropServices;
using FedEdge.Onnx.Proto;
using Google.Protobuf;

namespace FedEdge.Onnx;

/// <summary>Typed access to <see cref="TensorProto"/> contents, whether stored in raw_data or typed fields.</summary>
public static class TensorProtoExtensions
{
    /// <summary>Number of elements (product of dims; 1 for a scalar).</summary>
    public static long ElementCount(this TensorProto tensor)
    {
        long count = 1;
        foreach (var d in tensor.Dims)
        {
            count *= d;
        }

        return count;
    }

    public static TensorProto.Types.DataType ElementType(this TensorProto tensor) => (TensorProto.Types.DataType)tensor.DataType;

    public static float[] ToFloatArray(this TensorProto tensor)
    {
        Require(tensor, TensorProto.Types.DataType.Float);
        if (tensor.HasRawData)
        {
            return FromRaw<float>(tensor);
        }

        return CheckCount(tensor, tensor.FloatData.ToArray());
    }

    public static double[] ToDoubleArray(this TensorProto tensor)
    {
        Require(tensor, TensorProto.Types.DataType.Double);
        if (tensor.HasRawData)
        {
            return FromRaw<double>(tensor);
        }

        return CheckCount(tensor, tensor.DoubleData.ToArray());
    }

    public static long[] ToInt64Array(this TensorProto tensor)
    {
        Require(tensor, TensorProto.Types.DataType.Int64);
        if (tensor.HasRawData)
        {
            return FromRaw<long>(tensor);
        }

        return CheckCount(tensor, tensor.Int64Data.ToArray());
    }

    /// <summary>Copies float contents into <paramref name="destination"/> without allocating when stored as raw_data.</summary>
    public static void CopyFloatsTo(this TensorProto tensor, Span<float> destination)
    {
        Require(tensor, TensorProto.Types.DataType.Float);
        if (destination.Length != tensor.ElementCount())
        {
            throw new ArgumentException($"Tensor '{tensor.Name}' has {tensor.ElementCount()} elements, destination {destination.Length}.");
        }

        if (tensor.HasRawData)
        {
            MemoryMarshal.Cast<byte, float>(RawSpan(tensor, sizeof(float))).CopyTo(destination);
        }
        else
        {
            CheckCount(tensor, tensor.FloatData.ToArray()).CopyTo(destination);
        }
    }

    /// <summary>Replaces the contents with <paramref name="values"/> as raw_data, keeping name and dims.</summary>
    public static void SetFloats(this TensorProto tensor, ReadOnlySpan<float> values)
    {
        if (values.Length != tensor.ElementCount())
        {
            throw new ArgumentException($"Tensor '{tensor.Name}' has {tensor.ElementCount()} elements, got {values.Length}.");
        }

        tensor.DataType = (int)TensorProto.Types.DataType.Float;
        tensor.FloatData.Clear();
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
    }

    public static TensorProto Create(string name, ReadOnlySpan<float> values, params long[] dims) =>
        Create(name, TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(values), dims);

    public static TensorProto Create(string name, ReadOnlySpan<double> values, params long[] dims) =>
        Create(name, TensorProto.Types.DataType.Double, MemoryMarshal.AsBytes(values), dims);

    public static TensorProto Create(string name, ReadOnlySpan<long> values, params long[] dims) =>
        Create(name, TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes(values), dims);

    public static TensorProto Create(string name, TensorProto.Types.DataType type, ReadOnlySpan<byte> raw, params long[] dims)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
        tensor.Dims.AddRange(dims);
        return tensor;
    }

    private static void Require(TensorProto tensor, TensorProto.Types.DataType type)
    {
        if (tensor.DataType != (int)type)
        {
            throw new OnnxFormatException(
                $"Tensor '{tensor.Name}' holds {(TensorProto.Types.DataType)tensor.DataType}, expected {type}.");
        }

        if (tensor.DataLocation == TensorProto.Types.DataLocation.External)
        {
            throw new OnnxFormatException($"Tensor '{tensor.Name}' uses external data, which FedEdge does not load.");
        }
    }

    private static ReadOnlySpan<byte> RawSpan(TensorProto tensor, int elementSize)
    {
        var raw = tensor.RawData.Span;
        if (raw.Length != tensor.ElementCount() * elementSize)
        {
            throw new OnnxFormatException(
                $"Tensor '{tensor.Name}' raw_data has {raw.Length} bytes, expected {tensor.ElementCount() * elementSize}.");
        }

        return raw;
    }

    // raw_data is little-endian by the format; every platform FedEdge targets is little-endian.
    private static T[] FromRaw<T>(TensorProto tensor) where T : unmanaged =>
        MemoryMarshal.Cast<byte, T>(RawSpan(tensor, Marshal.SizeOf<T>())).ToArray();

    private static T[] CheckCount<T>(TensorProto tensor, T[] values)
    {
        if (values.Length != tensor.ElementCount())
        {
            throw new OnnxFormatException($"Tensor '{tensor.Name}' has {values.Length} values for {tensor.ElementCount()} elements.");
        }

        return values;
    }
}
