using System.Runtime.InteropServices;
using FedEdge.Compression;

namespace FedEdge.Protocol.Tests;

public class CodecTests
{
    public static TheoryData<string> Specs => ["fp32", "fp16", "sign", "sign:block=64", "topk:0.01", "topk:0.5,values=fp16"];

    [Theory]
    [MemberData(nameof(Specs))]
    public void Parser_round_trips_canonical_specs(string spec)
    {
        IUpdateCodec codec = UpdateCodecs.Parse(spec);
        Assert.Equal(codec.Spec, UpdateCodecs.Parse(codec.Spec).Spec);
        Assert.StartsWith(codec.Id, spec, StringComparison.Ordinal);
    }

    [Fact]
    public void Parser_reads_parameters_and_rejects_junk()
    {
        Assert.Equal("sign:block=4096", UpdateCodecs.Parse("sign").Spec);
        Assert.Equal(128, ((SignCodec)UpdateCodecs.Parse("SIGN:block=128")).BlockSize);
        Assert.Equal(0.01, ((TopKCodec)UpdateCodecs.Parse("topk:0.01")).Ratio);
        Assert.Equal(TopKValueFormat.Fp16, ((TopKCodec)UpdateCodecs.Parse("topk:ratio=0.2,values=fp16")).ValueFormat);
        foreach (string bad in new[] { "", "gzip", "topk", "topk:0", "topk:1.5", "topk:nan", "sign:block=0", "sign:block=-4", "sign:size=3", "fp32:1", "topk:0.1,values=int8" })
        {
            Assert.False(UpdateCodecs.TryParse(bad, out _, out string? error), bad);
            Assert.False(string.IsNullOrEmpty(error));
        }
        Assert.Throws<FormatException>(() => UpdateCodecs.Parse("zip"));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(33)]
    [InlineData(1000)]
    [InlineData(4097)]
    public void Fp32_round_trip_is_exact(int d)
    {
        float[] v = TestData.Gaussian(d, d);
        byte[] payload = Fp32Codec.Instance.Encode(v);
        Assert.Equal(v, TestData.Decode(Fp32Codec.Instance, payload));
        Assert.True(payload.Length <= Fp32Codec.Instance.MaxEncodedSize(d));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(5000)]
    public void Fp16_round_trip_matches_Half_conversion_and_saturates(int d)
    {
        float[] v = TestData.Gaussian(d, d, 10f);
        v[0] = 1e6f; // beyond fp16 range
        byte[] payload = Fp16Codec.Instance.Encode(v);
        float[] decoded = TestData.Decode(Fp16Codec.Instance, payload);
        Assert.Equal(65504f, decoded[0]);
        for (int i = 1; i < d; i++)
        {
            Assert.Equal((float)(Half)v[i], decoded[i]);
        }
        Assert.Equal(PayloadHeader.Length(d) + (2 * d), payload.Length);
    }

    [Fact]
    public void TopK_keeps_the_largest_magnitudes_with_exact_values()
    {
        float[] v = [0.1f, -5f, 0.2f, 3f, -0.05f, 0f, 4f, -0.3f, 1f, 2f];
        var codec = new TopKCodec(0.3); // k = 3
        float[] decoded = TestData.Decode(codec, codec.Encode(v));
        Assert.Equal([0f, -5f, 0f, 3f, 0f, 0f, 4f, 0f, 0f, 0f], decoded);
    }

    [Fact]
    public void TopK_breaks_ties_by_lower_index_and_handles_zero_vectors()
    {
        var codec = new TopKCodec(0.5);
        Assert.Equal([1f, -1f, 0f, 0f], TestData.Decode(codec, codec.Encode([1f, -1f, 1f, -1f])));
        Assert.Equal([0f, 0f, 0f, 0f], TestData.Decode(codec, codec.Encode([0f, 0f, 0f, 0f])));
    }

    [Theory]
    [InlineData(100, 0.01)]
    [InlineData(10_000, 0.05)]
    [InlineData(100_003, 0.001)]
    public void TopK_matches_a_sort_based_reference(int d, double ratio)
    {
        float[] v = TestData.Gaussian(d, 7);
        var codec = new TopKCodec(ratio);
        int k = codec.KeptCount(d);
        float[] decoded = TestData.Decode(codec, codec.Encode(v));
        int[] expected = Enumerable.Range(0, d).OrderByDescending(i => MathF.Abs(v[i])).ThenBy(i => i).Take(k).Order().ToArray();
        int[] kept = Enumerable.Range(0, d).Where(i => decoded[i] != 0).ToArray();
        Assert.Equal(expected, kept);
        Assert.All(kept, i => Assert.Equal(v[i], decoded[i]));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void TopK_is_exact_when_the_threshold_sample_is_misleading(int pattern)
    {
        // d = 2^17 with k = 1 %: the sampled path applies; its stride is 32, so these patterns fool the sample.
        const int D = 1 << 17;
        var v = new float[D];
        for (int i = 0; i < D; i++)
        {
            bool sampled = i % 32 == 0;
            v[i] = pattern switch
            {
                0 => sampled ? 1e-6f * (i + 1) : 1f + (i % 977), // sample sees only tiny values: too many candidates
                1 => sampled ? 1e6f + i : 1e-3f * (i % 13), // sample sees only huge values: too few candidates
                _ => 1f, // all ties
            };
        }
        var codec = new TopKCodec(0.01);
        int k = codec.KeptCount(D);
        float[] decoded = TestData.Decode(codec, codec.Encode(v));
        int[] expected = Enumerable.Range(0, D).OrderByDescending(i => MathF.Abs(v[i])).ThenBy(i => i).Take(k).Order().ToArray();
        Assert.Equal(expected, Enumerable.Range(0, D).Where(i => decoded[i] != 0).ToArray());
    }

    [Fact]
    public void Quickselect_agrees_with_sorting()
    {
        var random = new Random(3);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = random.Next(1, 300);
            float[] values = Enumerable.Range(0, n).Select(_ => (float)random.Next(-20, 20)).ToArray();
            int k = random.Next(n);
            float[] sorted = values.Order().ToArray();
            Assert.Equal(sorted[k], Quickselect.KthSmallest(values, k));
        }
    }

    [Fact]
    public void Sign_bit_layout_is_lsb_first_with_one_for_negative()
    {
        float[] v = [-1f, 2f, 3f, -4f, 5f, 6f, 7f, -8f, /* byte 1 */ 1f, -1f, -0f];
        byte[] payload = SignCodec.Default.Encode(v);
        Assert.True(SignPayload.TryParse(payload, out SignPayload parsed).IsValid);
        Assert.Equal(2, parsed.Bits.Length);
        Assert.Equal(0b1000_1001, parsed.Bits[0]);
        Assert.Equal(0b0000_0110, parsed.Bits[1]); // −0 has its sign bit set; padding bits are zero
        Assert.Equal(1, parsed.Scales.Length);
        Assert.Equal(v.Sum(MathF.Abs) / v.Length, parsed.Scales[0], 5);
    }

    [Theory]
    [InlineData(1, 4096)]
    [InlineData(9, 4)]
    [InlineData(1000, 64)]
    [InlineData(12_345, 4096)]
    [InlineData(65_537, 1000)]
    public void Sign_decodes_to_block_scale_times_sign(int d, int block)
    {
        float[] v = TestData.Gaussian(d, d + block);
        var codec = new SignCodec(block);
        float[] decoded = TestData.Decode(codec, codec.Encode(v));
        for (int start = 0; start < d; start += block)
        {
            int length = Math.Min(block, d - start);
            float scale = v.Skip(start).Take(length).Sum(MathF.Abs) / length;
            for (int i = start; i < start + length; i++)
            {
                Assert.Equal(v[i] < 0 ? -scale : scale, decoded[i], scale * 1e-4f);
            }
        }
    }

    [Fact]
    public void Sign_blocks_never_straddle_tensor_segments()
    {
        // Two tensors of 3 and 5 coordinates, B = 4: blocks [0,3) [3,7) [7,8).
        float[] v = [1f, -1f, 1f, 10f, -10f, 10f, -10f, 100f];
        var codec = new SignCodec(4, [3, 5]);
        byte[] payload = codec.Encode(v);
        Assert.True(SignPayload.TryParse(payload, out SignPayload parsed).IsValid);
        Assert.Equal([1f, 10f, 100f], parsed.Scales.ToArray());
        Assert.Equal([1f, -1f, 1f, 10f, -10f, 10f, -10f, 100f], TestData.Decode(codec, payload));
        Assert.Throws<ArgumentException>(() => codec.Encode(new float[7]));
    }

    [Theory]
    [InlineData(1_000)]
    [InlineData(4_096)]
    [InlineData(100_000)]
    [InlineData(1_000_000)]
    [InlineData(10_000_019)]
    public void Sign_update_costs_at_most_105_percent_of_d_over_8_plus_a_fixed_header(int d)
    {
        const int FixedHeader = 16; // tag, version, varint d (≤ 5), varint B (2), varint S (1), one block's worth of slack
        float[] v = TestData.Gaussian(d, 11);
        byte[] payload = SignCodec.Default.Encode(v);
        Assert.True(payload.Length <= (1.05 * d / 8) + FixedHeader, $"{payload.Length} bytes for d = {d}");
        Assert.Equal(SignCodec.Default.MaxEncodedSize(d), payload.Length);
    }

    [Fact]
    public void Sign_scale_of_huge_finite_values_stays_finite()
    {
        float[] v = [3e38f, -3e38f, 3e38f, 1f];
        float[] decoded = TestData.Decode(SignCodec.Default, SignCodec.Default.Encode(v));
        Assert.Equal((float)((3e38 * 3 + 1) / 4), decoded[0]);
        Assert.Equal(-decoded[0], decoded[1]);
    }

    [Fact]
    public void Vector_and_scalar_sign_packing_agree_on_every_tail_length()
    {
        var random = new Random(5);
        for (int d = 0; d < 80; d++)
        {
            float[] v = Enumerable.Range(0, d).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
            byte[] bits = new byte[(d + 7) / 8];
            SignCodec.PackSignBits(v, bits);
            for (int i = 0; i < d; i++)
            {
                Assert.Equal(v[i] < 0, ((bits[i >> 3] >> (i & 7)) & 1) == 1);
            }
            float[] unpacked = new float[d];
            SignCodec.UnpackSignBits(bits, 0, d, 2f, unpacked);
            Assert.All(Enumerable.Range(0, d), i => Assert.Equal(v[i] < 0 ? -2f : 2f, unpacked[i]));
        }
    }

    /// <summary>The cloud decodes into pooled buffers without clearing them (UpdateBufferPool): a decode must write every coordinate.</summary>
    [Theory]
    [MemberData(nameof(Specs))]
    public void Decoding_overwrites_every_coordinate_of_a_used_destination(string spec)
    {
        IUpdateCodec codec = UpdateCodecs.Parse(spec);
        float[] v = TestData.Gaussian(1_000, 3);
        v.AsSpan(100, 300).Clear(); // top-k then keeps none of these: they must still come out as 0
        byte[] encoded = codec.Encode(v);
        var fresh = new float[v.Length];
        Assert.True(codec.Decode(encoded, fresh).IsValid);
        float[] used = Enumerable.Repeat(float.NaN, v.Length).ToArray();
        Assert.True(codec.Decode(encoded, used).IsValid);
        Assert.Equal(fresh, used);
    }

    /// <summary>FedBuff adds payloads straight into its sum (IUpdateCodec.DecodeAdd): it must equal adding the decoded vector.</summary>
    [Theory]
    [MemberData(nameof(Specs))]
    public void Adding_a_payload_equals_adding_its_decoded_vector(string spec)
    {
        IUpdateCodec codec = UpdateCodecs.Parse(spec);
        foreach (int d in new[] { 1, 7, 8, 61, 1_000 })
        {
            byte[] encoded = codec.Encode(TestData.Gaussian(d, d));
            float[] decoded = TestData.Decode(codec, encoded);
            float[] sum = TestData.Gaussian(d, d + 1);
            float[] expected = sum.Select((s, i) => s + (0.75f * decoded[i])).ToArray();
            Assert.True(codec.DecodeAdd(encoded, 0.75f, sum).IsValid);
            for (int i = 0; i < d; i++)
            {
                Assert.Equal(expected[i], sum[i], 1e-6f * Math.Max(1f, Math.Abs(expected[i])));
            }
        }
    }

    [Fact]
    public void Adding_sign_bits_follows_blocks_and_tensor_segments()
    {
        // Two tensors (5 and 11 coordinates), blocks of 4: scales per block, signs per coordinate.
        var codec = new SignCodec(blockSize: 4, segmentLengths: [5, 11]);
        float[] v = [1, -3, 2, -2, 8, /* tensor 2 */ -1, -1, 1, 1, 4, 0, -4, 0, 2, 2, -2];
        byte[] encoded = codec.Encode(v);
        float[] sum = new float[v.Length];
        sum[0] = 10f;
        Assert.True(codec.DecodeAdd(encoded, 2f, sum).IsValid);
        // Block scales: 2 and 8 in tensor 1; 1, 2 and 2 in tensor 2 (its last block holds 3 coordinates); +0 decodes to +scale.
        float[] decoded = TestData.Decode(codec, encoded);
        Assert.Equal(10f + (2f * 2f), sum[0]);
        Assert.Equal(-2f * 2f, sum[1]);
        Assert.Equal(2f * 8f, sum[4]);
        Assert.Equal(2f * 2f, sum[10]);
        Assert.Equal(-2f * 2f, sum[15]);
        Assert.Equal(decoded.Select((x, i) => (i == 0 ? 10f : 0f) + (2f * x)), sum);
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void A_refused_payload_leaves_the_sum_untouched(string spec)
    {
        IUpdateCodec codec = UpdateCodecs.Parse(spec);
        byte[] encoded = codec.Encode(TestData.Gaussian(64, 9));
        float[] sum = TestData.Gaussian(64, 10);
        float[] before = [.. sum];
        Assert.False(codec.DecodeAdd(encoded.AsSpan(0, encoded.Length - 1), 1f, sum).IsValid); // truncated
        Assert.Equal(before, sum);
        Assert.Equal(PayloadError.DimensionMismatch, codec.DecodeAdd(encoded, 1f, new float[65]).Error);
    }

    [Fact]
    public void A_sign_payload_with_a_non_finite_scale_adds_nothing()
    {
        byte[] encoded = SignCodec.Default.Encode(TestData.Gaussian(100, 4));
        int scaleAt = encoded.Length - ((100 + 7) / 8) - 4;
        MemoryMarshal.Write(encoded.AsSpan(scaleAt), float.NaN);
        float[] sum = new float[100];
        Assert.Equal(PayloadError.NonFinite, SignCodec.Default.DecodeAdd(encoded, 1f, sum).Error);
        Assert.All(sum, x => Assert.Equal(0f, x));
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void Encoders_reject_non_finite_input(string spec)
    {
        IUpdateCodec codec = UpdateCodecs.Parse(spec);
        float[] v = TestData.Gaussian(100, 1);
        v[42] = float.NaN;
        ArgumentException e = Assert.Throws<ArgumentException>(() => codec.Encode(v));
        Assert.Contains("42", e.Message, StringComparison.Ordinal);
        v[42] = float.PositiveInfinity;
        Assert.Throws<ArgumentException>(() => codec.Encode(v));
    }

    [Fact]
    public void Decoders_reject_NaN_and_infinity_in_payloads()
    {
        float[] v = TestData.Gaussian(64, 2);
        byte[] fp32 = Fp32Codec.Instance.Encode(v);
        MemoryMarshal.Write(fp32.AsSpan(fp32.Length - 4), float.NaN);
        Assert.Equal(PayloadError.NonFinite, Fp32Codec.Instance.Validate(fp32, out _).Error);

        byte[] fp16 = Fp16Codec.Instance.Encode(v);
        MemoryMarshal.Write(fp16.AsSpan(fp16.Length - 2), Half.PositiveInfinity);
        Assert.Equal(PayloadError.NonFinite, Fp16Codec.Instance.Decode(fp16, new float[64]).Error);

        byte[] sign = SignCodec.Default.Encode(v);
        int scaleOffset = sign.Length - 8 - 4; // one scale before 8 sign bytes
        MemoryMarshal.Write(sign.AsSpan(scaleOffset), float.NegativeInfinity);
        Assert.Equal(PayloadError.NonFinite, SignCodec.Default.Validate(sign, out _).Error);

        var topk = new TopKCodec(0.5);
        byte[] sparse = topk.Encode(v);
        MemoryMarshal.Write(sparse.AsSpan(PayloadHeader.Length(64) + 1 + 1), float.NaN); // first value
        Assert.Equal(PayloadError.NonFinite, topk.Decode(sparse, new float[64]).Error);
    }

    [Fact]
    public void Decoders_report_truncation_trailing_bytes_wrong_codec_and_dimension()
    {
        float[] v = TestData.Gaussian(100, 3);
        foreach (IUpdateCodec codec in TestData.AllCodecs().Where(c => c is not SignCodec { SegmentLengths.IsEmpty: false }))
        {
            byte[] payload = codec.Encode(v);
            Assert.Equal(PayloadError.Truncated, codec.Validate(payload.AsSpan(0, payload.Length - 1), out _).Error);
            Assert.Equal(PayloadError.Oversized, codec.Validate([.. payload, 0], out _).Error);
            Assert.Equal(PayloadError.DimensionMismatch, codec.Decode(payload, new float[99]).Error);
            IUpdateCodec other = codec is Fp32Codec ? SignCodec.Default : Fp32Codec.Instance;
            Assert.Equal(PayloadError.Malformed, other.Validate(payload, out _).Error);
            byte[] future = [.. payload];
            future[1] = 2;
            Assert.Equal(PayloadError.UnsupportedVersion, codec.Validate(future, out _).Error);
        }
    }

    [Fact]
    public void Sign_rejects_nonzero_padding_and_negative_scales()
    {
        byte[] payload = SignCodec.Default.Encode([1f, -2f, 3f]);
        payload[^1] |= 0x80;
        Assert.Equal(PayloadError.Malformed, SignCodec.Default.Validate(payload, out _).Error);
        payload = SignCodec.Default.Encode([1f, -2f, 3f]);
        MemoryMarshal.Write(payload.AsSpan(payload.Length - 5), -1f);
        Assert.Equal(PayloadError.Malformed, SignCodec.Default.Validate(payload, out _).Error);
    }

    [Fact]
    public void All_codecs_round_trip_through_a_buffer_writer()
    {
        float[] v = TestData.Gaussian(32, 9);
        foreach (IUpdateCodec codec in TestData.AllCodecs())
        {
            var writer = new System.Buffers.ArrayBufferWriter<byte>();
            int written = codec.Encode(v, writer);
            Assert.Equal(written, writer.WrittenCount);
            Assert.True(codec.Validate(writer.WrittenSpan, out int d).IsValid);
            Assert.Equal(32, d);
            Assert.True(written <= codec.MaxEncodedSize(32));
            Assert.Equal(codec.Tag, writer.WrittenSpan[0]);
        }
    }
}
