using System.Buffers.Binary;
using System.Runtime.InteropServices;
using FedEdge.Protocol.Messages;

namespace FedEdge.Protocol;

/// <summary>
/// The published bytes of a FedMM model version: the ONNX model (θ = T(Ŝ)) followed by the server's aggregated
/// surrogate statistics Ŝ as little-endian float32, so that devices can form S_i − Ŝ − V_i (algorithms.md §5) and both
/// are covered by the announcement's one SHA-256. <c>ModelAnnouncement.statistics_count</c> says how many floats.
/// </summary>
public static class ModelBundle
{
    /// <summary>The model followed by the statistics.</summary>
    public static byte[] Join(ReadOnlySpan<byte> model, ReadOnlySpan<float> statistics)
    {
        var bytes = new byte[model.Length + (statistics.Length * sizeof(float))];
        model.CopyTo(bytes);
        var tail = bytes.AsSpan(model.Length);
        for (var i = 0; i < statistics.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(tail[(i * sizeof(float))..], statistics[i]);
        }

        return bytes;
    }

    /// <summary>The model part of verified bytes (all of them when the announcement has no statistics).</summary>
    public static ReadOnlyMemory<byte> Model(ModelAnnouncement announcement, ReadOnlyMemory<byte> bytes) =>
        bytes[..ModelLength(announcement, bytes.Length)];

    /// <summary>The statistics Ŝ of verified bytes (empty when the announcement has none).</summary>
    public static float[] Statistics(ModelAnnouncement announcement, ReadOnlySpan<byte> bytes)
    {
        var tail = bytes[ModelLength(announcement, bytes.Length)..];
        var values = new float[announcement.StatisticsCount];
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.Cast<byte, float>(tail).CopyTo(values);
        }
        else
        {
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = BinaryPrimitives.ReadSingleLittleEndian(tail[(i * sizeof(float))..]);
            }
        }

        return values;
    }

    private static int ModelLength(ModelAnnouncement announcement, int total)
    {
        var statisticsBytes = announcement.StatisticsCount * sizeof(float);
        return announcement.StatisticsCount >= 0 && statisticsBytes < total
            ? (int)(total - statisticsBytes)
            : throw new InvalidDataException($"Model v{announcement.ModelVersion}: {announcement.StatisticsCount} statistics do not fit in {total} bytes.");
    }
}
