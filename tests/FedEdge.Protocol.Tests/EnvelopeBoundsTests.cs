using FedEdge.Compression;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

/// <summary>An envelope is as large as its codec payload and known metadata need: unknown fields are bounded.</summary>
public sealed class EnvelopeBoundsTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    /// <summary>A validly signed envelope with an unknown field of <paramref name="bytes"/> bytes (field 100, length-delimited).</summary>
    private byte[] SignedWithUnknownField(int bytes)
    {
        var envelope = ProtocolFixture.Envelope(TestData.Gaussian(64, 1), Fp32Codec.Instance);
        envelope.UpdateId = UpdateEnvelopeSigner.NewUpdateId();
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        envelope.WriteTo(output);
        output.WriteTag(100, WireFormat.WireType.LengthDelimited);
        output.WriteLength(bytes);
        output.Flush();
        stream.Write(new byte[bytes]);
        return SignedMessage.Sign(stream.ToArray(), SignedMessage.UpdateEnvelopeDomain, _f.DeviceKey);
    }

    [Fact]
    public void A_signed_envelope_carrying_64_MiB_of_unknown_fields_is_refused_as_oversized()
    {
        var verifier = new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = ProtocolFixture.Federation, MaxEnvelopeBytes = 128 << 20 }, _f.DeviceKeys);
        var result = verifier.Verify(SignedWithUnknownField(64 << 20), ProtocolFixture.DeviceId, expectedDimension: 64);
        Assert.Equal(RejectReason.Oversized, result.Reason);
        Assert.Contains("does not know", result.Message);
    }

    [Fact]
    public void A_small_unknown_field_from_a_newer_device_is_still_accepted_and_signed()
    {
        var signed = SignedWithUnknownField(UpdateVerifierOptions.DefaultMaxUnknownFieldBytes - 16);
        var result = _f.Verifier().Verify(signed, ProtocolFixture.DeviceId, expectedDimension: 64);
        Assert.True(result.IsAccepted, result.ToString());
        signed[^80] ^= 1; // inside the unknown field: covered by the signature
        Assert.Equal(RejectReason.BadSignature, _f.Verifier().Verify(signed, ProtocolFixture.DeviceId, expectedDimension: 64).Reason);
    }
}
