using FedEdge.Compression;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

public sealed class SigningTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Theory]
    [InlineData("fp32")]
    [InlineData("fp16")]
    [InlineData("topk:0.05")]
    [InlineData("sign:block=256")]
    public void Signed_envelope_verifies_and_decodes(string spec)
    {
        float[] update = TestData.Gaussian(777, 4);
        IUpdateCodec codec = UpdateCodecs.Parse(spec);
        byte[] signed = new UpdateEnvelopeSigner(_f.DeviceKey).Sign(ProtocolFixture.Envelope(update, codec));

        Decoded<VerifiedUpdate> result = _f.Verifier().Verify(signed, ProtocolFixture.DeviceId, expectedDimension: 777);
        Assert.True(result.IsAccepted, result.ToString());
        VerifiedUpdate verified = result.Value;
        Assert.Equal(16, verified.Envelope.UpdateId.Length);
        Assert.Equal(640, verified.Envelope.SampleCount);
        Assert.Equal(0.87, verified.Envelope.Metrics.Accuracy);
        Assert.True(verified.Envelope.CreatedUnixMs > 0);
        float[] decoded = new float[777];
        Assert.True(verified.DecodeInto(decoded).IsValid);
        Assert.Equal(TestData.Decode(codec, codec.Encode(update)), decoded);
    }

    [Fact]
    public void Every_flipped_bit_is_rejected()
    {
        byte[] signed = _f.SignedUpdate(d: 64);
        UpdateEnvelopeVerifier verifier = _f.Verifier();
        var reasons = new HashSet<RejectReason>();
        for (int i = 0; i < signed.Length; i++)
        {
            for (int bit = 0; bit < 8; bit += 3)
            {
                byte[] tampered = [.. signed];
                tampered[i] ^= (byte)(1 << bit);
                Decoded<VerifiedUpdate> result = verifier.Verify(tampered);
                Assert.False(result.IsAccepted, $"byte {i} bit {bit} accepted");
                reasons.Add(result.Reason);
            }
        }
        Assert.Contains(RejectReason.BadSignature, reasons);
        Assert.Equal(RejectReason.BadSignature, verifier.Verify(Tamper(signed, signed.Length / 2)).Reason);
    }

    private static byte[] Tamper(byte[] bytes, int index)
    {
        byte[] copy = [.. bytes];
        copy[index] ^= 1;
        return copy;
    }

    [Fact]
    public void Wrong_key_unknown_device_wrong_federation_and_wrong_topic_are_rejected()
    {
        byte[] signed = _f.SignedUpdate();
        using var impostor = SigningKeyPair.Generate(ProtocolFixture.DeviceId);
        var otherRing = new VerificationKeyRing(impostor.VerificationKey);
        var verifier = new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = ProtocolFixture.Federation }, otherRing);
        Assert.Equal(RejectReason.BadSignature, verifier.Verify(signed).Reason);

        Assert.Equal(RejectReason.UnknownKey, new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = ProtocolFixture.Federation }, new VerificationKeyRing()).Verify(signed).Reason);
        Assert.Equal(RejectReason.WrongFederation, _f.Verifier("fleet-b").Verify(signed).Reason);
        Assert.Equal(RejectReason.WrongDevice, _f.Verifier().Verify(signed, transportDeviceId: "pi-0008").Reason);
        Assert.Equal(RejectReason.DimensionMismatch, _f.Verifier().Verify(signed, expectedDimension: 999).Reason);
        Assert.Equal(RejectReason.Oversized, new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = ProtocolFixture.Federation, MaxEnvelopeBytes = 100 }, _f.DeviceKeys).Verify(signed).Reason);
    }

    [Fact]
    public void A_device_cannot_sign_for_another_device()
    {
        UpdateEnvelope envelope = ProtocolFixture.Envelope([1f, 2f], Fp32Codec.Instance, deviceId: "pi-0001");
        Assert.Throws<ArgumentException>(() => new UpdateEnvelopeSigner(_f.DeviceKey).Sign(envelope));
    }

    [Fact]
    public void A_model_announcement_signature_is_not_valid_for_an_envelope()
    {
        // Same key, same bytes, other domain: a cross-type replay must fail.
        UpdateEnvelope envelope = ProtocolFixture.Envelope([1f, 2f], Fp32Codec.Instance);
        envelope.UpdateId = UpdateEnvelopeSigner.NewUpdateId();
        byte[] wrongDomain = SignedMessage.Sign(envelope.ToByteArray(), SignedMessage.ModelAnnouncementDomain, _f.DeviceKey);
        Assert.Equal(RejectReason.BadSignature, _f.Verifier().Verify(wrongDomain).Reason);
    }

    [Fact]
    public void Missing_duplicate_or_short_signatures_are_rejected()
    {
        UpdateEnvelope envelope = ProtocolFixture.Envelope([1f, 2f], Fp32Codec.Instance);
        envelope.UpdateId = UpdateEnvelopeSigner.NewUpdateId();
        Assert.Equal(RejectReason.BadSignature, _f.Verifier().Verify(envelope.ToByteArray()).Reason);
        envelope.Signature = ByteString.CopyFrom(new byte[63]);
        Assert.Equal(RejectReason.BadSignature, _f.Verifier().Verify(envelope.ToByteArray()).Reason);
        byte[] signed = _f.SignedUpdate();
        byte[] twice = [.. signed, .. signed[^66..]];
        Assert.Equal(RejectReason.Malformed, _f.Verifier().Verify(twice).Reason);
    }

    [Fact]
    public void Unknown_fields_from_newer_senders_stay_covered_by_the_signature()
    {
        UpdateEnvelope envelope = ProtocolFixture.Envelope([1f, 2f], Fp32Codec.Instance);
        envelope.UpdateId = UpdateEnvelopeSigner.NewUpdateId();
        envelope.CreatedUnixMs = 1;
        byte[] unknownField = [0xA2, 0x06, 0x03, (byte)'n', (byte)'e', (byte)'w']; // field 100, "new"
        byte[] body = [.. envelope.ToByteArray(), .. unknownField];
        byte[] signed = SignedMessage.Sign(body, SignedMessage.UpdateEnvelopeDomain, _f.DeviceKey);
        Assert.True(_f.Verifier().Verify(signed).IsAccepted);
        signed[body.Length - 1] ^= 1; // change the unknown field's content
        Assert.Equal(RejectReason.BadSignature, _f.Verifier().Verify(signed).Reason);
    }

    [Fact]
    public void Verified_but_buggy_payloads_are_rejected_with_their_reason()
    {
        var signer = new UpdateEnvelopeSigner(_f.DeviceKey);
        UpdateEnvelope e = ProtocolFixture.Envelope([1f, 2f, 3f], Fp32Codec.Instance);
        e.Codec = "zstd";
        Assert.Equal(RejectReason.UnknownCodec, _f.Verifier().Verify(signer.Sign(e)).Reason);

        e = ProtocolFixture.Envelope([1f, 2f, 3f], Fp32Codec.Instance);
        e.Codec = "sign";
        Assert.Equal(RejectReason.UnknownCodec, _f.Verifier().Verify(signer.Sign(e)).Reason);

        e = ProtocolFixture.Envelope([1f, 2f, 3f], Fp32Codec.Instance);
        byte[] payload = e.Payload.ToByteArray();
        BitConverter.TryWriteBytes(payload.AsSpan(payload.Length - 4), float.NaN);
        e.Payload = ByteString.CopyFrom(payload);
        Assert.Equal(RejectReason.NonFinite, _f.Verifier().Verify(signer.Sign(e)).Reason);

        e = ProtocolFixture.Envelope([1f, 2f, 3f], Fp32Codec.Instance);
        e.Payload = ByteString.CopyFrom(payload.AsSpan(0, payload.Length - 2));
        Assert.Equal(RejectReason.Truncated, _f.Verifier().Verify(signer.Sign(e)).Reason);

        e = ProtocolFixture.Envelope([1f, 2f, 3f], Fp32Codec.Instance);
        e.Dimension = 4;
        Assert.Equal(RejectReason.DimensionMismatch, _f.Verifier().Verify(signer.Sign(e)).Reason);

        e = ProtocolFixture.Envelope([1f, 2f, 3f], Fp32Codec.Instance);
        e.Metrics.Loss = double.NaN;
        Assert.Equal(RejectReason.NonFinite, _f.Verifier().Verify(signer.Sign(e)).Reason);

        e = ProtocolFixture.Envelope([1f, 2f, 3f], Fp32Codec.Instance);
        e.UpdateId = ByteString.CopyFrom(new byte[8]);
        Assert.Equal(RejectReason.Malformed, _f.Verifier().Verify(signer.Sign(e)).Reason);
    }

    [Fact]
    public void Keys_round_trip_through_text_and_base64()
    {
        string privateText = _f.DeviceKey.ExportPrivateText();
        Assert.StartsWith("-----BEGIN FEDEDGE ED25519 PRIVATE KEY-----", privateText, StringComparison.Ordinal);
        using SigningKeyPair restored = SigningKeyPair.ImportPrivateText(privateText);
        Assert.Equal(ProtocolFixture.DeviceId, restored.KeyId);
        Assert.Equal(_f.DeviceKey.VerificationKey.RawPublicKey.ToArray(), restored.VerificationKey.RawPublicKey.ToArray());

        // A key restored from text signs envelopes the original public key accepts.
        byte[] signed = new UpdateEnvelopeSigner(restored).Sign(ProtocolFixture.Envelope([1f], Fp32Codec.Instance));
        Assert.True(_f.Verifier().Verify(signed).IsAccepted);

        VerificationKey pub = VerificationKey.ImportText(_f.DeviceKey.VerificationKey.ExportText());
        Assert.Equal(32, pub.RawPublicKey.Length);
        Assert.Equal(pub.ToBase64(), VerificationKey.FromBase64(ProtocolFixture.DeviceId, pub.ToBase64()).ToBase64());

        Assert.Throws<FormatException>(() => SigningKeyPair.ImportPrivateText(_f.DeviceKey.VerificationKey.ExportText()));
        Assert.Throws<FormatException>(() => VerificationKey.ImportText("-----BEGIN FEDEDGE ED25519 PUBLIC KEY-----\nKey-Id: x\nAAAA\n-----END FEDEDGE ED25519 PUBLIC KEY-----"));
        Assert.Throws<ArgumentException>(() => SigningKeyPair.Generate("bad/id"));
        Assert.Throws<ArgumentException>(() => new VerificationKey("x", new byte[31]));
    }
}
