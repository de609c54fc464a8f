using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace FedEdge.Data;

/// <summary>Element types of .npy arrays that FedEdge reads and writes (little-endian).</summary>
public enum NpyDataType
{
    Float32,
    Float64,
    Int32,
    Int64,
}

/// <summary>
/// A NumPy array in the .npy format (version 1.0–3.0): the magic "\x93NUMPY", a version, a header length,
/// a Python-literal header dict {'descr', 'fortran_order', 'shape'} padded to a multiple of 64 bytes, then
/// the raw little-endian data in C order. Arrays are read straight into a typed .NET array (no intermediate
/// copy), so n×d float32 update matrices of several GB load at disk speed.
/// </summary>
public sealed partial class NpyArray
{
    // Data move through spans of at most this many bytes, so arrays above 2 GB (Span's int length) work too.
    private const int ChunkBytes = 1 << 26;

    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    private NpyArray(NpyDataType dataType, int[] shape, Array data)
    {
        DataType = dataType;
        Shape = shape;
        Data = data;
    }

    /// <summary>Element type.</summary>
    public NpyDataType DataType { get; }

    /// <summary>Dimensions in C order (empty for a scalar).</summary>
    public int[] Shape { get; }

    /// <summary>The elements: float[], double[], int[] or long[] according to <see cref="DataType"/>.</summary>
    public Array Data { get; }

    /// <summary>Number of elements.</summary>
    public long Length => Data.LongLength;

    /// <summary>The elements as float32 (the array itself for float32 data, a converted copy otherwise).</summary>
    public float[] ToFloat32() => Data switch
    {
        float[] f => f,
        double[] d => Array.ConvertAll(d, v => (float)v),
        int[] i => Array.ConvertAll(i, v => (float)v),
        long[] l => Array.ConvertAll(l, v => (float)v),
        _ => throw new InvalidOperationException(),
    };

    /// <summary>The elements as float64 (the array itself for float64 data, a converted copy otherwise).</summary>
    public double[] ToFloat64() => Data switch
    {
        double[] d => d,
        float[] f => Array.ConvertAll(f, v => (double)v),
        int[] i => Array.ConvertAll(i, v => (double)v),
        long[] l => Array.ConvertAll(l, v => (double)v),
        _ => throw new InvalidOperationException(),
    };

    /// <summary>The elements as int64 (integer data only; the array itself for int64 data).</summary>
    public long[] ToInt64() => Data switch
    {
        long[] l => l,
        int[] i => Array.ConvertAll(i, v => (long)v),
        _ => throw new InvalidOperationException($"A {DataType} array cannot be read as integers (labels must be int32 or int64)."),
    };

    /// <summary>Wraps an existing array (not copied) with a shape.</summary>
    public static NpyArray Create<T>(T[] data, params int[] shape) where T : unmanaged
    {
        var type = TypeOf<T>();
        CheckShape(shape, data.LongLength);
        return new NpyArray(type, (int[])shape.Clone(), data);
    }

    /// <summary>Reads a .npy file.</summary>
    /// <exception cref="InvalidDataException">Not a .npy file, an unsupported dtype or Fortran order, or truncated.</exception>
    public static NpyArray Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            return Read(stream);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Reads a .npy array from a stream positioned at its magic string.</summary>
    public static NpyArray Read(Stream stream)
    {
        var (type, shape) = ReadHeader(stream);
        long count = 1;
        foreach (int d in shape)
        {
            count *= d;
        }
        if (count > Array.MaxLength)
        {
            throw new InvalidDataException($"array of {count} elements is too large for one .NET array.");
        }
        Array data = type switch
        {
            NpyDataType.Float32 => ReadData<float>(stream, (int)count),
            NpyDataType.Float64 => ReadData<double>(stream, (int)count),
            NpyDataType.Int32 => ReadData<int>(stream, (int)count),
            _ => ReadData<long>(stream, (int)count),
        };
        return new NpyArray(type, shape, data);
    }

    /// <summary>Reads a float32 .npy file directly into a float[] (other dtypes are converted).</summary>
    public static float[] ReadFloat32(string path, out int[] shape)
    {
        var array = Read(path);
        shape = array.Shape;
        return array.ToFloat32();
    }

    /// <summary>Reads only the header: element type and shape (to check sizes before loading).</summary>
    public static (NpyDataType DataType, int[] Shape) ReadHeader(Stream stream)
    {
        Span<byte> prefix = stackalloc byte[8];
        ReadExactly(stream, prefix, "magic string");
        if (!prefix[..6].SequenceEqual(Magic))
        {
            throw new InvalidDataException("not a .npy file (missing the \\x93NUMPY magic string).");
        }
        byte major = prefix[6];
        int headerLength;
        if (major == 1)
        {
            Span<byte> len = stackalloc byte[2];
            ReadExactly(stream, len, "header length");
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(len);
        }
        else if (major is 2 or 3)
        {
            Span<byte> len = stackalloc byte[4];
            ReadExactly(stream, len, "header length");
            uint l = BinaryPrimitives.ReadUInt32LittleEndian(len);
            if (l > 1 << 20)
            {
                throw new InvalidDataException($"header length {l} is implausible.");
            }
            headerLength = (int)l;
        }
        else
        {
            throw new InvalidDataException($".npy format version {major}.{prefix[7]} is not supported (1.0–3.0).");
        }
        var headerBytes = new byte[headerLength];
        ReadExactly(stream, headerBytes, "header");
        string header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(headerBytes);
        return ParseHeader(header);
    }

    /// <summary>Writes this array as a version 1.0 .npy file (2.0 when the header needs it).</summary>
    public void Write(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        Write(stream);
    }

    /// <summary>Writes this array to a stream.</summary>
    public void Write(Stream stream)
    {
        switch (Data)
        {
            case float[] f: Write<float>(stream, f, Shape); break;
            case double[] d: Write<double>(stream, d, Shape); break;
            case int[] i: Write<int>(stream, i, Shape); break;
            case long[] l: Write<long>(stream, l, Shape); break;
        }
    }

    /// <summary>Writes <paramref name="data"/> with <paramref name="shape"/> as a .npy file.</summary>
    public static void Write<T>(string path, ReadOnlySpan<T> data, ReadOnlySpan<int> shape) where T : unmanaged
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        Write(stream, data, shape);
    }

    /// <summary>Writes <paramref name="data"/> with <paramref name="shape"/> in .npy format to a stream.</summary>
    public static void Write<T>(Stream stream, ReadOnlySpan<T> data, ReadOnlySpan<int> shape) where T : unmanaged
    {
        var type = TypeOf<T>();
        CheckShape(shape, data.Length);
        string shapeText = shape.Length switch
        {
            0 => "()",
            1 => $"({shape[0]},)",
            _ => "(" + string.Join(", ", shape.ToArray()) + ")",
        };
        string dict = $"{{'descr': '{Descr(type)}', 'fortran_order': False, 'shape': {shapeText}, }}";
        // Header (magic + version + length + dict + '\n') is padded with spaces to a multiple of 64 bytes.
        int prefixLength = 10;
        bool v2 = false;
        int total = Align64(prefixLength + dict.Length + 1);
        if (total - prefixLength > ushort.MaxValue)
        {
            v2 = true;
            prefixLength = 12;
            total = Align64(prefixLength + dict.Length + 1);
        }
        int dictLength = total - prefixLength;
        Span<byte> prefix = stackalloc byte[12];
        Magic.CopyTo(prefix);
        prefix[6] = (byte)(v2 ? 2 : 1);
        prefix[7] = 0;
        if (v2)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(prefix[8..], (uint)dictLength);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(prefix[8..], (ushort)dictLength);
        }
        stream.Write(prefix[..prefixLength]);
        string padded = dict.PadRight(dictLength - 1) + "\n";
        stream.Write(Encoding.Latin1.GetBytes(padded));
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Writing .npy files is implemented for little-endian machines.");
        }
        int chunk = ChunkBytes / Marshal.SizeOf<T>();
        for (int start = 0; start < data.Length; start += chunk)
        {
            stream.Write(MemoryMarshal.AsBytes(data.Slice(start, Math.Min(chunk, data.Length - start))));
        }
    }

    private static T[] ReadData<T>(Stream stream, int count) where T : unmanaged
    {
        var data = new T[count];
        int chunk = ChunkBytes / Marshal.SizeOf<T>();
        for (int start = 0; start < count; start += chunk)
        {
            var bytes = MemoryMarshal.AsBytes(data.AsSpan(start, Math.Min(chunk, count - start)));
            ReadExactly(stream, bytes, $"data ({(long)count * Marshal.SizeOf<T>()} bytes)");
        }
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Reading .npy files is implemented for little-endian machines.");
        }
        return data;
    }

    private static (NpyDataType, int[]) ParseHeader(string header)
    {
        var descr = DescrPattern().Match(header);
        if (!descr.Success)
        {
            throw new InvalidDataException($"header has no 'descr' entry: {header.Trim()}");
        }
        var type = descr.Groups[1].Value switch
        {
            "<f4" => NpyDataType.Float32,
            "<f8" => NpyDataType.Float64,
            "<i4" => NpyDataType.Int32,
            "<i8" => NpyDataType.Int64,
            var other => throw new InvalidDataException(
                $"dtype '{other}' is not supported; FedEdge reads little-endian float32, float64, int32 and int64 ('<f4', '<f8', '<i4', '<i8')."),
        };
        var fortran = FortranPattern().Match(header);
        if (!fortran.Success)
        {
            throw new InvalidDataException($"header has no 'fortran_order' entry: {header.Trim()}");
        }
        if (fortran.Groups[1].Value == "True")
        {
            throw new InvalidDataException("Fortran-order arrays are not supported; save with np.ascontiguousarray(a).");
        }
        var shapeMatch = ShapePattern().Match(header);
        if (!shapeMatch.Success)
        {
            throw new InvalidDataException($"header has no 'shape' entry: {header.Trim()}");
        }
        var shape = shapeMatch.Groups[1].Value
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v >= 0
                ? v
                : throw new InvalidDataException($"shape entry '{s}' is not a dimension."))
            .ToArray();
        return (type, shape);
    }

    private static NpyDataType TypeOf<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? NpyDataType.Float32
        : typeof(T) == typeof(double) ? NpyDataType.Float64
        : typeof(T) == typeof(int) ? NpyDataType.Int32
        : typeof(T) == typeof(long) ? NpyDataType.Int64
        : throw new NotSupportedException($".npy element type {typeof(T).Name} is not supported (float, double, int, long).");

    private static string Descr(NpyDataType type) => type switch
    {
        NpyDataType.Float32 => "<f4",
        NpyDataType.Float64 => "<f8",
        NpyDataType.Int32 => "<i4",
        _ => "<i8",
    };

    private static void CheckShape(ReadOnlySpan<int> shape, long length)
    {
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"Shape [{string.Join(", ", shape.ToArray())}] has a negative dimension.");
            }
            count *= d;
        }
        if (count != length)
        {
            throw new ArgumentException($"Shape [{string.Join(", ", shape.ToArray())}] holds {count} elements but the data has {length}.");
        }
    }

    private static int Align64(int n) => (n + 63) / 64 * 64;

    private static void ReadExactly(Stream stream, Span<byte> buffer, string what)
    {
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($".npy file is truncated while reading its {what}.");
        }
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
