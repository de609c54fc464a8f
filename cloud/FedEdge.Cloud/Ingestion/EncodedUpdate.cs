using FedEdge.Aggregation;
using FedEdge.Compression;

namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// A verified update left in its codec payload, for a federation whose aggregation adds it straight into a running
/// sum (<see cref="IUpdateCodec.DecodeAdd"/>): FedBuff never needs the decoded vector, and for the sign codec skipping
/// it saves writing and re-reading 4·d bytes per update.
/// </summary>
public sealed class EncodedUpdate(IUpdateCodec codec, ReadOnlyMemory<byte> payload, int dimension) : IAccumulableUpdate
{
    public int Dimension => dimension;

    public string? AddTo(Span<float> accumulator, float weight)
    {
        var check = codec.DecodeAdd(payload.Span, weight, accumulator);
        return check.IsValid ? null : check.Message ?? check.Error.ToString();
    }
}
