using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol;

/// <summary>Cloud side: signs the retained <see cref="ClusterAssignment"/> that tells a device its cluster(s) (FedDAA).</summary>
public sealed class ClusterAssignmentSigner(SigningKeyPair cloudKey)
{
    /// <summary>Returns the signed bytes to publish retained on <see cref="MqttTopics.ClusterAssignment"/>.</summary>
    public byte[] Sign(ClusterAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        ArgumentException.ThrowIfNullOrEmpty(assignment.Federation);
        ArgumentException.ThrowIfNullOrEmpty(assignment.DeviceId);
        var unsigned = assignment.Clone();
        unsigned.Signature = ByteString.Empty;
        unsigned.CloudKeyId = cloudKey.KeyId;
        return SignedMessage.Sign(unsigned.ToByteArray(), SignedMessage.ClusterAssignmentDomain, cloudKey);
    }
}

/// <summary>
/// Device side: decodes and verifies a cluster assignment: the cloud's signature, that it is for this device of this
/// federation, and that its shapes agree (centres are k × R × D with one cluster id per centre, label distributions R).
/// </summary>
public sealed class ClusterAssignmentVerifier(string federation, string deviceId, IVerificationKeys cloudKeys)
{
    public const int MaxBytes = 1 << 20;

    public Decoded<ClusterAssignment> Verify(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxBytes)
            return Reject(RejectReason.Oversized, $"Cluster assignment of {bytes.Length} bytes exceeds {MaxBytes} bytes.");
        ClusterAssignment a;
        try
        {
            a = ClusterAssignment.Parser.ParseFrom(bytes);
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or ArgumentException or InvalidOperationException)
        {
            return Reject(RejectReason.Malformed, $"Not a ClusterAssignment: {e.Message}");
        }
        if (a.Federation != federation)
            return Reject(RejectReason.WrongFederation, $"Cluster assignment for federation '{UpdateEnvelopeVerifier.Printable(a.Federation)}' received by '{federation}'.");
        if (a.DeviceId != deviceId)
            return Reject(RejectReason.WrongDevice, $"Cluster assignment for device '{UpdateEnvelopeVerifier.Printable(a.DeviceId)}' received by '{deviceId}'.");
        if (!cloudKeys.TryGet(a.CloudKeyId, out VerificationKey? key))
            return Reject(RejectReason.UnknownKey, $"No cloud key '{UpdateEnvelopeVerifier.Printable(a.CloudKeyId)}' is trusted.");
        (RejectReason reason, string? message) = SignedMessage.Verify(bytes, SignedMessage.ClusterAssignmentDomain, key);
        if (reason != RejectReason.None)
            return Reject(reason, $"Cluster assignment epoch {a.Epoch}: {message}");
        if (a.Epoch < 1 || a.Clusters.Count == 0)
            return Reject(RejectReason.Malformed, $"Cluster assignment epoch {a.Epoch} names no cluster or has an epoch below 1.");
        int r = a.LabelCount, d = a.OutputDimension;
        if (r < 1 || d < 1 || a.Centres.Count != a.CentreClusters.Count * r * d)
            return Reject(RejectReason.Inconsistent, $"Cluster assignment epoch {a.Epoch}: {a.Centres.Count} centre values are not {a.CentreClusters.Count} centres of {r} x {d}.");
        foreach (var c in a.Clusters)
        {
            if (c.Cluster < 0 || !(c.Prior is >= 0 and <= 1))
                return Reject(RejectReason.Malformed, $"Cluster assignment epoch {a.Epoch}: cluster {c.Cluster} has prior {c.Prior} (must be in [0, 1]).");
            if (c.LabelDistribution.Count is not 0 && c.LabelDistribution.Count != r)
                return Reject(RejectReason.Inconsistent, $"Cluster assignment epoch {a.Epoch}: cluster {c.Cluster} has {c.LabelDistribution.Count} label probabilities for {r} labels.");
            foreach (var p in c.LabelDistribution)
                if (!float.IsFinite(p) || p < 0)
                    return Reject(RejectReason.NonFinite, $"Cluster assignment epoch {a.Epoch}: cluster {c.Cluster} has label probability {p}.");
        }
        foreach (var v in a.Centres)
            if (!float.IsFinite(v))
                return Reject(RejectReason.NonFinite, $"Cluster assignment epoch {a.Epoch}: a centre value is {v}.");
        return Decoded<ClusterAssignment>.Accept(a);
    }

    private static Decoded<ClusterAssignment> Reject(RejectReason reason, string message) => Decoded<ClusterAssignment>.Reject(reason, message);
}
