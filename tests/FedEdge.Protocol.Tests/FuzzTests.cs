using System.Security.Cryptography;
using CsCheck;
using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Protocol.Messages;

namespace FedEdge.Protocol.Tests;

/// <summary>
/// Hostile-input properties (CsCheck): random and mutated bytes for every decoder. No exception may
/// escape, and whatever is accepted must decode to finite values and survive a round trip.
/// About 115k cases per run in total.
/// </summary>
public sealed class FuzzTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    /// <summary>(kind, position, value) edits: flip a bit, overwrite, truncate, insert, delete, or set 0xFF.</summary>
    private static readonly Gen<(int Kind, int Position, byte Value)[]> Edits =
        Gen.Select(Gen.Int[0, 5], Gen.Int[0, 1 << 20], Gen.Byte).Array[1, 4];

    private static byte[] Apply(byte[] original, (int Kind, int Position, byte Value)[] edits)
    {
        var bytes = new List<byte>(original);
        foreach ((int kind, int position, byte value) in edits)
        {
            if (bytes.Count == 0)
            {
                bytes.Add(value);
                continue;
            }
            int p = position % bytes.Count;
            switch (kind)
            {
                case 0: bytes[p] ^= (byte)(1 << (value & 7)); break;
                case 1: bytes[p] = value; break;
                case 2: bytes.RemoveRange(p, bytes.Count - p); break;
                case 3: bytes.Insert(p, value); break;
                case 4: bytes.RemoveAt(p); break;
                default: bytes[p] = 0xFF; break;
            }
        }
        return [.. bytes];
    }

    private static Gen<byte[]> Mutations(params byte[][] seeds) =>
        Gen.Select(Gen.Int[0, seeds.Length - 1], Edits, (i, edits) => Apply(seeds[i], edits));

    private static readonly Gen<byte[]> RandomBytes = Gen.Byte.Array[0, 400];

    /// <summary>Random bodies behind a plausible header, so the fuzzer gets past the tag and version checks.</summary>
    private static Gen<byte[]> PlausiblePayloads(byte tag) =>
        Gen.Select(Gen.Int[0, 300], Gen.Byte.Array[0, 300], (d, body) =>
        {
            byte[] header = new byte[PayloadHeader.MaxLength];
            int n = PayloadHeader.Write(header, tag, d);
            return (byte[])[.. header.AsSpan(0, n), .. body];
        });

    public static TheoryData<int> CodecIndices => [.. Enumerable.Range(0, TestData.AllCodecs().Length)];

    [Theory]
    [MemberData(nameof(CodecIndices))]
    public void Codec_decoders_survive_hostile_payloads(int codecIndex)
    {
        IUpdateCodec codec = TestData.AllCodecs()[codecIndex];
        int[] dimensions = codec is SignCodec { SegmentLengths.IsEmpty: false } segmented ? [segmented.SegmentLengths.ToArray().Sum()] : [1, 8, 13, 64, 100];
        byte[][] seeds = [.. dimensions.Select(d => codec.Encode(TestData.Gaussian(d, d)))];
        Gen<byte[]> hostile = Gen.Frequency((1, RandomBytes), (1, PlausiblePayloads(codec.Tag)), (3, Mutations(seeds)));
        hostile.Sample(bytes => CheckCodecPayload(codec, bytes), iter: 10_000);
    }

    private static void CheckCodecPayload(IUpdateCodec codec, byte[] bytes)
    {
        PayloadCheck validation = codec.Validate(bytes, out int d);
        if (!validation.IsValid)
        {
            Assert.NotEqual(PayloadError.None, validation.Error);
            Assert.False(codec.Decode(bytes, new float[Math.Min(d, 1 << 16)]).IsValid);
            return;
        }
        if (d > 1 << 20)
        {
            return; // a sparse payload may announce a huge d; callers bound d by the model size
        }
        var decoded = new float[d];
        PayloadCheck decoding = codec.Decode(bytes, decoded);
        Assert.True(decoding.IsValid, decoding.ToString());
        Assert.Equal(-1, FloatKernels.IndexOfNonFinite(decoded));
        if (codec is TopKCodec)
        {
            return; // re-encoding may legitimately pick other coordinates among zeros and ties
        }
        IUpdateCodec reencoder = codec;
        if (codec is SignCodec && SignPayload.TryParse(bytes, out SignPayload sign).IsValid)
        {
            var segments = new List<int>();
            BlockEnumerator blocks = sign.GetBlocks();
            while (blocks.MoveNext(out _, out int length))
            {
                segments.Add(length);
            }
            reencoder = new SignCodec(sign.BlockSize, segments.Count > 0 ? segments : null);
        }
        float[] again = TestData.Decode(reencoder, reencoder.Encode(decoded));
        for (int i = 0; i < d; i++)
        {
            Assert.Equal(decoded[i], again[i], Math.Abs(decoded[i]) * 1e-5f);
        }
    }

    [Fact]
    public void Envelope_verifier_survives_hostile_envelopes()
    {
        byte[][] seeds = [_f.SignedUpdate(40, "sign:block=8"), _f.SignedUpdate(20, "topk:0.2"), _f.SignedUpdate(10, "fp16"), _f.SignedUpdate(6, "fp32")];
        UpdateEnvelope[] originals = [.. seeds.Select(s => UpdateEnvelope.Parser.ParseFrom(s))];
        UpdateEnvelopeVerifier verifier = _f.Verifier();
        Gen.Frequency((1, RandomBytes), (6, Mutations(seeds))).Sample(bytes =>
        {
            Decoded<VerifiedUpdate> result = verifier.Verify(bytes, ProtocolFixture.DeviceId);
            if (result.IsAccepted)
            {
                // Only an unchanged (signed) envelope can pass; it must decode to finite values.
                Assert.Contains(result.Value.Envelope, originals);
                var values = new float[result.Value.Dimension];
                Assert.True(result.Value.DecodeInto(values).IsValid);
                Assert.Equal(-1, FloatKernels.IndexOfNonFinite(values));
            }
            else
            {
                Assert.False(string.IsNullOrEmpty(result.Message));
            }
        }, iter: 15_000);
    }

    [Fact]
    public void Reassembler_survives_hostile_frames()
    {
        byte[] signed = _f.SignedUpdate(3000, "fp32");
        byte[] id = UpdateEnvelope.Parser.ParseFrom(signed).UpdateId.ToByteArray();
        byte[][] frames = [.. UpdateFramer.Frame(signed, id, maxFrameBytes: 1024)];
        var reassembler = new UpdateReassembler(new ReassemblyOptions { MaxPendingBytes = 1 << 20, MaxEnvelopeBytes = 1 << 16 });
        UpdateEnvelopeVerifier verifier = _f.Verifier();
        Gen.Frequency((1, RandomBytes), (1, Mutations(frames)), (1, Gen.Int[0, frames.Length - 1].Select(i => frames[i]))).Sample(bytes =>
        {
            FrameResult result = reassembler.Accept(ProtocolFixture.DeviceId, bytes);
            if (result.Outcome == FrameOutcome.Complete)
            {
                Decoded<VerifiedUpdate> verified = verifier.Verify(result.Envelope.Span, ProtocolFixture.DeviceId);
                Assert.True(!verified.IsAccepted || result.Envelope.Span.SequenceEqual(signed));
            }
            Assert.True(reassembler.PendingBytes <= 1 << 20);
        }, iter: 10_000);
    }

    [Fact]
    public void Model_announcement_and_chunks_survive_hostile_bytes()
    {
        byte[] model = RandomNumberGenerator.GetBytes(5000);
        PublishedModel published = new ModelPublisher(_f.CloudKey).Publish(ProtocolFixture.Federation, 3, model, new ModelPublishOptions { ChunkSize = 1024 });
        var verifier = new ModelAnnouncementVerifier(ProtocolFixture.Federation, _f.CloudKeys);
        ModelAnnouncement original = published.Announcement;
        Gen.Frequency((1, RandomBytes), (4, Mutations(published.AnnouncementBytes))).Sample(bytes =>
        {
            Decoded<ModelAnnouncement> result = verifier.Verify(bytes);
            Assert.True(!result.IsAccepted || result.Value.Equals(original));
        }, iter: 6_000);

        Gen.Frequency((1, RandomBytes), (4, Mutations([.. published.Chunks]))).Array[1, 3].Sample(hostileChunks =>
        {
            ModelAssembler assembler = ModelAssembler.Start(published.AnnouncementBytes, verifier).GetValueOrThrow();
            foreach (byte[] chunk in hostileChunks.Concat(published.Chunks))
            {
                assembler.AddChunk(chunk);
            }
            Decoded<byte[]> result = assembler.TryComplete();
            Assert.True(result.IsAccepted ? result.Value.AsSpan().SequenceEqual(model) : result.Reason == RejectReason.HashMismatch);
        }, iter: 6_000);
    }

    [Fact]
    public void Error_feedback_state_reader_survives_hostile_bytes()
    {
        byte[][] seeds =
        [
            ErrorFeedbackState.Serialize(new Ef14Compressor(SignCodec.Default, 5, [1, 2, 3, 4, 5], 2)),
            ErrorFeedbackState.Serialize(new EControlCompressor(new TopKCodec(0.5), 3, 0.25f, [1, 2, 3], [4, 5, 6], 9)),
            ErrorFeedbackState.Serialize(new Ef21Compressor(Fp16Codec.Instance, 2, [7, 8], 1)),
        ];
        // Mutations with the checksum recomputed reach the structural checks behind it.
        Gen<byte[]> resealed = Mutations(seeds).Select(bytes =>
        {
            if (bytes.Length > 32)
            {
                SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32), bytes.AsSpan(bytes.Length - 32));
            }
            return bytes;
        });
        Gen.Frequency((1, RandomBytes), (2, Mutations(seeds)), (3, resealed)).Sample(bytes =>
        {
            PayloadCheck check = ErrorFeedbackState.TryDeserialize(bytes, out ErrorFeedbackCompressor? state);
            Assert.Equal(check.IsValid, state is not null);
            if (state is not null)
            {
                Assert.All(state.StateVectors, v => Assert.Equal(-1, FloatKernels.IndexOfNonFinite(v)));
                byte[] again = ErrorFeedbackState.Serialize(state);
                Assert.True(ErrorFeedbackState.TryDeserialize(again, out ErrorFeedbackCompressor? reloaded).IsValid);
                Assert.Equal(again, ErrorFeedbackState.Serialize(reloaded!));
            }
        }, iter: 10_000);
    }

    [Fact]
    public void Device_status_decoder_survives_hostile_bytes()
    {
        byte[] will = DeviceStatuses.LastWill(ProtocolFixture.Federation, ProtocolFixture.DeviceId);
        Gen.Frequency((1, RandomBytes), (2, Mutations(will))).Sample(bytes =>
        {
            Decoded<DeviceStatus> result = DeviceStatuses.Decode(bytes, ProtocolFixture.Federation, ProtocolFixture.DeviceId);
            Assert.True(!result.IsAccepted || result.Value.DeviceId == ProtocolFixture.DeviceId);
        }, iter: 3_000);
    }
}
