using System.Security.Cryptography;
using FedEdge.Compression;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol;

/// <summary>Device side: signs update envelopes with the device's Ed25519 key (key id = device id).</summary>
public sealed class UpdateEnvelopeSigner(SigningKeyPair deviceKey)
{
    /// <summary>Fills <c>update_id</c> (16 random bytes) and <c>created_unix_ms</c> when unset, then signs.</summary>
    /// <returns>The signed envelope bytes, ready for <see cref="UpdateFramer"/>.</returns>
    public byte[] Sign(UpdateEnvelope envelope, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        if (envelope.DeviceId != deviceKey.KeyId)
        {
            throw new ArgumentException($"Envelope device id '{envelope.DeviceId}' differs from the signing key's '{deviceKey.KeyId}'.", nameof(envelope));
        }
        if (envelope.UpdateId.IsEmpty)
        {
            envelope.UpdateId = NewUpdateId();
        }
        if (envelope.CreatedUnixMs == 0)
        {
            envelope.CreatedUnixMs = (time ?? TimeProvider.System).GetUtcNow().ToUnixTimeMilliseconds();
        }
        envelope.Signature = ByteString.Empty;
        return SignedMessage.Sign(envelope.ToByteArray(), SignedMessage.UpdateEnvelopeDomain, deviceKey);
    }

    public static ByteString NewUpdateId() => ByteString.CopyFrom(RandomNumberGenerator.GetBytes(UpdateEnvelopeVerifier.UpdateIdLength));
}

/// <summary>Limits applied by <see cref="UpdateEnvelopeVerifier"/>.</summary>
public sealed class UpdateVerifierOptions
{
    /// <summary>Federation this receiver serves; envelopes for others are rejected.</summary>
    public required string Federation { get; init; }

    /// <summary>Largest accepted envelope (bytes).</summary>
    public int MaxEnvelopeBytes { get; init; } = 64 << 20;

    /// <summary>Bytes of fields this receiver does not know (newer fields, or junk) an envelope may carry. They are signed and
    /// would be stored verbatim with the envelope, so they are bounded like everything else; the envelope's size is then
    /// what the codec's payload needs plus its known metadata.</summary>
    public int MaxUnknownFieldBytes { get; init; } = DefaultMaxUnknownFieldBytes;

    public const int DefaultMaxUnknownFieldBytes = 4096;

    /// <summary>Also check NaN/∞ and the exact structure of the codec payload (one O(d) pass).</summary>
    public bool ValidatePayload { get; init; } = true;
}

/// <summary>A verified update: signature, federation, device, codec and payload all checked.</summary>
public sealed class VerifiedUpdate(UpdateEnvelope envelope, IUpdateCodec codec, int dimension)
{
    public UpdateEnvelope Envelope { get; } = envelope;

    public IUpdateCodec Codec { get; } = codec;

    public int Dimension { get; } = dimension;

    public string DeviceId => Envelope.DeviceId;

    /// <summary>Hex of the 16-byte update id, the de-duplication key.</summary>
    public string UpdateIdHex => Convert.ToHexString(Envelope.UpdateId.Span);

    public ReadOnlySpan<byte> Payload => Envelope.Payload.Span;

    /// <summary>A verified decline (<see cref="UpdateDeclines"/>): counts towards a round's quorum, is never aggregated.</summary>
    public bool IsDecline => UpdateDeclines.IsDecline(Envelope);

    /// <summary>
    /// Decodes the payload into <paramref name="destination"/> (length <see cref="Dimension"/>). A decline has no
    /// payload: the destination is zeroed, so a consumer that forgets <see cref="IsDecline"/> sees Δ = 0, not stale data.
    /// </summary>
    public PayloadCheck DecodeInto(Span<float> destination)
    {
        if (IsDecline)
        {
            destination.Clear();
            return PayloadCheck.Valid;
        }
        return Codec.Decode(Payload, destination);
    }

    public override string ToString() => $"update {UpdateIdHex} from {DeviceId} on v{Envelope.BaseModelVersion} ({Codec.Spec}, d={Dimension})";
}

/// <summary>
/// Cloud side: decodes and verifies a signed envelope. Checks, in order: size, protobuf structure,
/// required fields, federation, device (against the transport identity), key, Ed25519 signature,
/// metrics finiteness, codec spec, payload structure, dimension and finiteness. An envelope with an empty payload or
/// zero samples must be an exact decline (<see cref="UpdateDeclines.Check"/>), else it is refused as Malformed.
/// </summary>
public sealed class UpdateEnvelopeVerifier(UpdateVerifierOptions options, IVerificationKeys deviceKeys)
{
    public const int UpdateIdLength = 16;

    /// <summary>Unknown fields are skipped while parsing, not copied: they are only counted (see <see cref="UpdateVerifierOptions.MaxUnknownFieldBytes"/>).</summary>
    private static readonly MessageParser<UpdateEnvelope> KnownFieldsParser = UpdateEnvelope.Parser.WithDiscardUnknownFields(true);

    /// <param name="envelopeBytes">The signed envelope bytes (from a frame or a reassembled chunk set).</param>
    /// <param name="transportDeviceId">The device id the broker authenticated (from the topic); null skips this check.</param>
    /// <param name="expectedDimension">The model's parameter count for the base version, when known.</param>
    public Decoded<VerifiedUpdate> Verify(ReadOnlySpan<byte> envelopeBytes, string? transportDeviceId = null, int? expectedDimension = null)
    {
        if (envelopeBytes.Length > options.MaxEnvelopeBytes)
        {
            return Reject(RejectReason.Oversized, $"Envelope of {envelopeBytes.Length} bytes exceeds the limit of {options.MaxEnvelopeBytes}.");
        }
        UpdateEnvelope envelope;
        try
        {
            envelope = KnownFieldsParser.ParseFrom(envelopeBytes);
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or ArgumentException or InvalidOperationException)
        {
            return Reject(RejectReason.Malformed, $"Not an UpdateEnvelope: {e.Message}");
        }
        // What the known fields take when written back (the signature's record included); the rest is unknown fields (or
        // a non-canonical encoding), which no check here reads.
        if (envelopeBytes.Length - envelope.CalculateSize() is var unknown && unknown > options.MaxUnknownFieldBytes)
        {
            return Reject(RejectReason.Oversized, $"Envelope carries {unknown} bytes of fields this cloud does not know; the limit is {options.MaxUnknownFieldBytes}.");
        }
        if (envelope.Federation != options.Federation)
        {
            return Reject(RejectReason.WrongFederation, $"Envelope for federation '{Printable(envelope.Federation)}' received by '{options.Federation}'.");
        }
        if (string.IsNullOrEmpty(envelope.DeviceId))
        {
            return Reject(RejectReason.Malformed, "Envelope has no device id.");
        }
        if (transportDeviceId is not null && envelope.DeviceId != transportDeviceId)
        {
            return Reject(RejectReason.WrongDevice, $"Envelope claims device '{Printable(envelope.DeviceId)}' but arrived from '{transportDeviceId}'.");
        }
        if (!deviceKeys.TryGet(envelope.DeviceId, out VerificationKey? key))
        {
            return Reject(RejectReason.UnknownKey, $"No public key registered for device '{Printable(envelope.DeviceId)}'.");
        }
        (RejectReason reason, string? message) = SignedMessage.Verify(envelopeBytes, SignedMessage.UpdateEnvelopeDomain, key);
        if (reason != RejectReason.None)
        {
            return Reject(reason, $"Device '{envelope.DeviceId}': {message}");
        }
        // Authenticated from here on: the remaining checks catch buggy devices, not forgeries.
        if (envelope.UpdateId.Length != UpdateIdLength)
        {
            return Reject(RejectReason.Malformed, $"Device '{envelope.DeviceId}': update id has {envelope.UpdateId.Length} bytes, not {UpdateIdLength}.");
        }
        if (envelope.SampleCount < 0 || envelope.BaseModelVersion < 0)
        {
            return Reject(RejectReason.Malformed, $"Device '{envelope.DeviceId}': negative sample count or base model version.");
        }
        if (envelope.Metrics is { } m && !(double.IsFinite(m.Loss) && double.IsFinite(m.Accuracy)))
        {
            return Reject(RejectReason.NonFinite, $"Device '{envelope.DeviceId}': training metrics are not finite (loss {m.Loss}, accuracy {m.Accuracy}).");
        }
        if (!UpdateCodecs.TryParse(envelope.Codec, out IUpdateCodec? codec, out string? codecError))
        {
            return Reject(RejectReason.UnknownCodec, $"Device '{envelope.DeviceId}': {codecError}");
        }
        if (envelope.Dimension < 0 || envelope.Dimension > PayloadHeader.MaxDimension)
        {
            return Reject(RejectReason.Oversized, $"Device '{envelope.DeviceId}': dimension {envelope.Dimension} is outside [0, {PayloadHeader.MaxDimension}].");
        }
        int dimension = (int)envelope.Dimension;
        if (expectedDimension is int expected && expected != dimension)
        {
            return Reject(RejectReason.DimensionMismatch, $"Device '{envelope.DeviceId}': dimension {dimension}, model has {expected}.");
        }
        ReadOnlySpan<byte> payload = envelope.Payload.Span;
        if (payload.IsEmpty || envelope.SampleCount == 0)
        {
            // The one exception to "an update has a payload": a decline, checked exactly.
            return UpdateDeclines.Check(envelope) is { } problem
                ? Reject(RejectReason.Malformed, $"Device '{envelope.DeviceId}': {problem}")
                : Decoded<VerifiedUpdate>.Accept(new VerifiedUpdate(envelope, codec, dimension));
        }
        if (payload[0] != codec.Tag)
        {
            return Reject(RejectReason.UnknownCodec, $"Device '{envelope.DeviceId}': payload is not a '{codec.Spec}' payload.");
        }
        if (options.ValidatePayload)
        {
            PayloadCheck check = codec.Validate(payload, out int payloadDimension);
            if (!check.IsValid)
            {
                return Reject(RejectReasons.From(check.Error), $"Device '{envelope.DeviceId}': {check.Message}");
            }
            if (payloadDimension != dimension)
            {
                return Reject(RejectReason.DimensionMismatch, $"Device '{envelope.DeviceId}': payload has {payloadDimension} coordinates, envelope says {dimension}.");
            }
        }
        return Decoded<VerifiedUpdate>.Accept(new VerifiedUpdate(envelope, codec, dimension));
    }

    private static Decoded<VerifiedUpdate> Reject(RejectReason reason, string message) => Decoded<VerifiedUpdate>.Reject(reason, message);

    /// <summary>Hostile strings go into log messages: cap their length and strip control characters.</summary>
    internal static string Printable(string value)
    {
        string trimmed = value.Length > 64 ? value[..64] + "…" : value;
        return string.Concat(trimmed.Select(c => char.IsControl(c) ? '?' : c));
    }
}
