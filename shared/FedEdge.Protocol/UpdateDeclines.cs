using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol;

/// <summary>
/// A device's signed "nothing to send" for one FedDAA cluster model version. Under FedRC soft assignment each sample
/// draws one cluster model; a device none of whose samples drew cluster c trains nothing for c's version, yet the cloud
/// made it live in c's rounds. Without an answer a sync round with quorum 1 waits for its deadline. A decline is an
/// ordinary <see cref="UpdateEnvelope"/> (same signature, topic, outbox, broker ACL and update-id de-duplication) with
/// <c>sample_count = 0</c>, an empty payload, <c>cluster &gt; 0</c> and <c>base_model_version</c> = the declined version,
/// no training metrics and no drift report. It may carry the device's drift statistics: its FedRC weights w_ic for the
/// declined cluster are small but not zero, and P_c(y) sums them over the cluster's devices. The cloud counts a decline
/// towards the round's quorum and never aggregates it: a zero vector with weight 0 would still move a median or
/// trimmed mean.
/// </summary>
public static class UpdateDeclines
{
    /// <summary>Whether <paramref name="envelope"/> has the shape of a decline (zero samples and no payload).</summary>
    public static bool IsDecline(UpdateEnvelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        return envelope.SampleCount == 0 && envelope.Payload.IsEmpty;
    }

    /// <summary>
    /// Null when <paramref name="envelope"/>, which has zero samples or an empty payload, is an exact decline; otherwise
    /// what is wrong with it (for the rejection message).
    /// </summary>
    public static string? Check(UpdateEnvelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        if (envelope.SampleCount != 0)
            return $"empty payload with sample_count {envelope.SampleCount}; only a decline (sample_count 0) has no payload";
        if (!envelope.Payload.IsEmpty)
            return $"sample_count 0 with a {envelope.Payload.Length}-byte payload; an update reports its samples, a decline has no payload";
        if (envelope.Cluster <= 0)
            return $"decline for cluster {envelope.Cluster}; only FedDAA cluster models (cluster > 0) can be declined";
        if (envelope.Metrics is not null || envelope.DriftReport is not null)
            return "a decline carries no training metrics and no drift report";
        return null;
    }

    /// <summary>An unsigned decline of <paramref name="version"/> of cluster model <paramref name="cluster"/> (sign it with <see cref="UpdateEnvelopeSigner"/>).</summary>
    /// <param name="codec">The codec spec the device would use for this model (kept so the envelope parses like any update).</param>
    /// <param name="dimension">The model's parameter count d.</param>
    public static UpdateEnvelope Create(string federation, string deviceId, int cluster, long version, string codec, long dimension)
    {
        ArgumentException.ThrowIfNullOrEmpty(federation);
        ArgumentException.ThrowIfNullOrEmpty(deviceId);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cluster);
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        ArgumentOutOfRangeException.ThrowIfNegative(dimension);
        return new UpdateEnvelope
        {
            Federation = federation,
            DeviceId = deviceId,
            BaseModelVersion = version,
            SampleCount = 0,
            Codec = codec,
            Dimension = dimension,
            Payload = ByteString.Empty,
            Cluster = cluster,
        };
    }
}
