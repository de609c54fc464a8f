using FedEdge.Aggregation;
using FedEdge.Compression;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Cloud.Ingestion;

/// <summary>Decodes the payload of an envelope that was verified before (replay of the update log).</summary>
public static class UpdateDecoding
{
    public static bool TryDecode(ReadOnlySpan<byte> envelopeBytes, int dimension, out float[]? delta, out string? problem)
    {
        delta = null;
        UpdateEnvelope envelope;
        try
        {
            envelope = UpdateEnvelope.Parser.ParseFrom(envelopeBytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            problem = $"stored envelope does not parse: {e.Message}";
            return false;
        }
        if (!UpdateCodecs.TryParse(envelope.Codec, out var codec, out problem)) return false;
        var values = new float[dimension];
        var check = codec.Decode(envelope.Payload.Span, values);
        if (!check.IsValid)
        {
            problem = check.Message;
            return false;
        }
        if (UpdateValidator.IndexOfNonFinite(values) is var bad and >= 0)
        {
            problem = $"decoded update is not finite at coordinate {bad}";
            return false;
        }
        delta = values;
        problem = null;
        return true;
    }
}
