using System.Buffers;
using System.Text;
using FedEdge.Compression;

namespace FedEdge.Protocol;

/// <summary>
/// The signing rule shared by <c>ModelAnnouncement</c> and <c>UpdateEnvelope</c>: the signature is
/// protobuf field 15 (bytes, 64-byte Ed25519). Signed bytes = UTF-8 domain string ‖ the message
/// exactly as received with the field-15 record cut out. Receivers never re-serialize, so field
/// order and unknown (newer) fields stay covered by the signature.
/// </summary>
public static class SignedMessage
{
    public const int SignatureField = 15;
    public const int SignatureLength = 64;

    public static readonly byte[] ModelAnnouncementDomain = Encoding.UTF8.GetBytes("fededge/v1/model-announcement\0");
    public static readonly byte[] UpdateEnvelopeDomain = Encoding.UTF8.GetBytes("fededge/v1/update-envelope\0");
    public static readonly byte[] ClusterAssignmentDomain = Encoding.UTF8.GetBytes("fededge/v1/cluster-assignment\0");

    private const byte SignatureTag = (SignatureField << 3) | 2;

    /// <summary>Signs <paramref name="unsignedMessage"/> (serialized without field 15) and appends the signature record.</summary>
    public static byte[] Sign(ReadOnlySpan<byte> unsignedMessage, ReadOnlySpan<byte> domain, SigningKeyPair key)
    {
        byte[] signed = new byte[unsignedMessage.Length + 2 + SignatureLength];
        unsignedMessage.CopyTo(signed);
        byte[] rented = ArrayPool<byte>.Shared.Rent(domain.Length + unsignedMessage.Length);
        try
        {
            domain.CopyTo(rented);
            unsignedMessage.CopyTo(rented.AsSpan(domain.Length));
            int offset = unsignedMessage.Length;
            signed[offset++] = SignatureTag;
            signed[offset++] = SignatureLength;
            key.Sign(rented.AsSpan(0, domain.Length + unsignedMessage.Length), signed.AsSpan(offset, SignatureLength));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
        return signed;
    }

    /// <summary>Verifies the field-15 signature of a received message against <paramref name="key"/>.</summary>
    public static (RejectReason Reason, string? Message) Verify(ReadOnlySpan<byte> message, ReadOnlySpan<byte> domain, VerificationKey key)
    {
        if (!TryFindSignature(message, out int start, out int end, out string? error))
        {
            return (error is null ? RejectReason.BadSignature : RejectReason.Malformed, error ?? "The message carries no signature (field 15).");
        }
        int signatureLength = end - start;
        int valueLength = signatureLength - 2;
        if (valueLength != SignatureLength || message[start + 1] != SignatureLength)
        {
            return (RejectReason.BadSignature, $"The signature field holds {Math.Max(valueLength, 0)} bytes, not {SignatureLength}.");
        }
        ReadOnlySpan<byte> signature = message.Slice(start + 2, SignatureLength);
        int signedLength = domain.Length + message.Length - signatureLength;
        byte[] rented = ArrayPool<byte>.Shared.Rent(signedLength);
        try
        {
            Span<byte> signed = rented.AsSpan(0, signedLength);
            domain.CopyTo(signed);
            message[..start].CopyTo(signed[domain.Length..]);
            message[end..].CopyTo(signed[(domain.Length + start)..]);
            return key.Verify(signed, signature)
                ? (RejectReason.None, null)
                : (RejectReason.BadSignature, $"The signature does not verify with key '{key.KeyId}'.");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Walks the top-level protobuf records and finds the single field-15 record [start, end).
    /// False with a null error when it is absent; false with an error for malformed wire data or duplicates.
    /// </summary>
    internal static bool TryFindSignature(ReadOnlySpan<byte> message, out int start, out int end, out string? error)
    {
        start = end = -1;
        error = null;
        int offset = 0;
        while (offset < message.Length)
        {
            int recordStart = offset;
            if (!Varint.TryRead(message[offset..], out ulong tag, out int n) || tag > uint.MaxValue)
            {
                error = $"Bad field tag at byte {offset}.";
                return false;
            }
            offset += n;
            ulong field = tag >> 3;
            int wireType = (int)(tag & 7);
            if (field == 0)
            {
                error = $"Field number 0 at byte {recordStart}.";
                return false;
            }
            switch (wireType)
            {
                case 0:
                    if (!Varint.TryRead(message[offset..], out _, out n))
                    {
                        error = $"Bad varint in field {field}.";
                        return false;
                    }
                    offset += n;
                    break;
                case 1:
                    offset += 8;
                    break;
                case 5:
                    offset += 4;
                    break;
                case 2:
                    if (!Varint.TryRead(message[offset..], out ulong length, out n) || length > (ulong)(message.Length - offset - n))
                    {
                        error = $"Field {field} runs past the end of the message.";
                        return false;
                    }
                    offset += n + (int)length;
                    break;
                default:
                    error = $"Unsupported wire type {wireType} in field {field}.";
                    return false;
            }
            if (offset > message.Length)
            {
                error = $"Field {field} runs past the end of the message.";
                return false;
            }
            if (field == SignatureField)
            {
                if (start >= 0)
                {
                    error = "The message carries two signatures.";
                    return false;
                }
                if (wireType != 2)
                {
                    error = "The signature field is not length-delimited.";
                    return false;
                }
                start = recordStart;
                end = offset;
            }
        }
        return start >= 0;
    }
}
