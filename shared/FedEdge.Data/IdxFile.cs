using System.Buffers.Binary;
using System.IO.Compression;

namespace FedEdge.Data;

/// <summary>
/// Reader for the IDX format of MNIST and Fashion-MNIST (big-endian header: two zero bytes, a type code,
/// the number of dimensions, then one uint32 per dimension; the data follow row-major). Only unsigned-byte
/// data (type 0x08) is used by these data sets. Files ending in .gz are decompressed on the fly.
/// </summary>
public static class IdxFile
{
    private const byte UnsignedByteType = 0x08;

    /// <summary>Reads an unsigned-byte IDX file and returns its data and dimensions.</summary>
    /// <exception cref="InvalidDataException">The magic number, type or sizes are wrong, or the file is truncated.</exception>
    public static byte[] ReadBytes(string path, out int[] dimensions)
    {
        using var file = File.OpenRead(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)
            ? new GZipStream(file, CompressionMode.Decompress)
            : file;
        try
        {
            return ReadBytes(stream, out dimensions);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Reads an unsigned-byte IDX stream (already decompressed).</summary>
    public static byte[] ReadBytes(Stream stream, out int[] dimensions)
    {
        long total = ReadHeader(stream, out dimensions);
        var data = new byte[total];
        ReadExactly(stream, data, $"data ({total} bytes for dimensions [{string.Join(", ", dimensions)}])");
        CheckEnd(stream, total);
        return data;
    }

    /// <summary>
    /// Reads only the rows (entries of the first axis) at <paramref name="rows"/> of an unsigned-byte IDX file, in that
    /// order, streaming past the others: the memory is that of the rows kept, whatever the size of the file.
    /// </summary>
    /// <exception cref="InvalidDataException">As <see cref="ReadBytes(string, out int[])"/>, or a row outside the file's.</exception>
    public static byte[] ReadRows(string path, ReadOnlySpan<int> rows, out int[] dimensions)
    {
        using var file = File.OpenRead(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)
            ? new GZipStream(file, CompressionMode.Decompress)
            : file;
        try
        {
            return ReadRows(stream, rows, out dimensions);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Reads the rows at <paramref name="rows"/> of an unsigned-byte IDX stream (already decompressed), in that order.</summary>
    public static byte[] ReadRows(Stream stream, ReadOnlySpan<int> rows, out int[] dimensions)
    {
        long total = ReadHeader(stream, out dimensions);
        int count = dimensions[0];
        int rowSize = (int)(total / count);
        // Where each file row goes: positions sorted by row, so one pass over the file fills them all.
        var order = new int[rows.Length];
        for (int i = 0; i < order.Length; i++)
        {
            if ((uint)rows[i] >= (uint)count)
            {
                throw new InvalidDataException($"row {rows[i]} requested, but the file has {count} rows.");
            }
            order[i] = i;
        }
        var keys = rows.ToArray();
        Array.Sort(keys, order);
        var data = new byte[(long)rows.Length * rowSize];
        var row = new byte[rowSize];
        int next = 0;
        for (int r = 0; r < count; r++)
        {
            ReadExactly(stream, row, $"row {r} of {count}");
            for (; next < keys.Length && keys[next] == r; next++)
            {
                row.CopyTo(data.AsSpan(order[next] * rowSize, rowSize));
            }
        }
        CheckEnd(stream, total);
        return data;
    }

    /// <summary>Reads and checks the header; returns the number of data bytes it announces.</summary>
    private static long ReadHeader(Stream stream, out int[] dimensions)
    {
        Span<byte> magic = stackalloc byte[4];
        ReadExactly(stream, magic, "magic number");
        if (magic[0] != 0 || magic[1] != 0)
        {
            throw new InvalidDataException(
                $"not an IDX file (magic number 0x{BinaryPrimitives.ReadUInt32BigEndian(magic):X8}; expected 0x0000TTNN).");
        }
        if (magic[2] != UnsignedByteType)
        {
            throw new InvalidDataException($"IDX data type 0x{magic[2]:X2} is not supported (expected 0x08, unsigned byte).");
        }
        int rank = magic[3];
        if (rank is < 1 or > 4)
        {
            throw new InvalidDataException($"IDX rank {rank} is out of range (1..4).");
        }
        dimensions = new int[rank];
        Span<byte> dim = stackalloc byte[4];
        long total = 1;
        for (int i = 0; i < rank; i++)
        {
            ReadExactly(stream, dim, $"dimension {i}");
            uint d = BinaryPrimitives.ReadUInt32BigEndian(dim);
            if (d == 0 || d > int.MaxValue)
            {
                throw new InvalidDataException($"IDX dimension {i} is {d}.");
            }
            dimensions[i] = (int)d;
            total *= d;
        }
        if (total > Array.MaxLength)
        {
            throw new InvalidDataException($"IDX data of {total} bytes is too large.");
        }
        return total;
    }

    private static void CheckEnd(Stream stream, long total)
    {
        if (stream.ReadByte() != -1)
        {
            throw new InvalidDataException($"IDX file has bytes after the {total} data bytes its header announces.");
        }
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer, string what)
    {
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"IDX file is truncated while reading its {what}.");
        }
    }
}
