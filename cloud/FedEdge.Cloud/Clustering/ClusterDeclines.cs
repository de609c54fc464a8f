using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Ingestion;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Cloud.Clustering;

/// <summary>
/// Declines on the model grain's side (<see cref="UpdateDeclines"/>): a device's signed "none of my samples drew this
/// cluster version". A sync round counts them towards its quorum and never aggregates them; FedBuff ignores them.
/// </summary>
public static class ClusterDeclines
{
    /// <summary>
    /// Whether a submission is a decline. The bridge's verifier admits zero samples only for an exact decline; the
    /// envelope is still parsed (cheap: no payload) so a submission that did not come through it is not mistaken for one.
    /// </summary>
    public static bool IsDecline(UpdateSubmission update)
    {
        ArgumentNullException.ThrowIfNull(update);
        return update.SampleCount == 0 && TryParse(update.Envelope.Span) is { } envelope && UpdateDeclines.Check(envelope) is null;
    }

    /// <summary>Decodes a stored envelope for replay: a decline decodes to Δ = 0 (never aggregated), anything else as usual.</summary>
    public static bool TryDecodeStored(ReadOnlySpan<byte> envelopeBytes, int dimension, out float[]? delta, out string? problem)
    {
        if (TryParse(envelopeBytes) is { } envelope && UpdateDeclines.IsDecline(envelope))
        {
            problem = UpdateDeclines.Check(envelope);
            delta = problem is null ? new float[dimension] : null;
            return problem is null;
        }
        return UpdateDecoding.TryDecode(envelopeBytes, dimension, out delta, out problem);
    }

    internal static UpdateEnvelope? TryParse(ReadOnlySpan<byte> envelopeBytes)
    {
        try
        {
            return UpdateEnvelope.Parser.ParseFrom(envelopeBytes);
        }
        catch (InvalidProtocolBufferException)
        {
            return null;
        }
    }
}
