using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;

namespace FedEdge.Protocol.Tests;

public class ErrorFeedbackTests
{
    private static float[] Decode(ErrorFeedbackCompressor ef, byte[] message) => TestData.Decode(ef.Codec, message);

    [Theory]
    [InlineData("sign")]
    [InlineData("sign:block=7")]
    [InlineData("topk:0.05")]
    [InlineData("fp16")]
    public void Ef14_residual_keeps_the_sum(string spec)
    {
        const int D = 300;
        var ef = new Ef14Compressor(UpdateCodecs.Parse(spec), D);
        var sumDelta = new double[D];
        var sumSent = new double[D];
        for (int round = 0; round < 20; round++)
        {
            float[] delta = TestData.Gaussian(D, round);
            float[] sent = Decode(ef, ef.Compress(delta));
            Assert.Equal(sent, ef.LastSent.ToArray());
            for (int i = 0; i < D; i++)
            {
                sumDelta[i] += delta[i];
                sumSent[i] += sent[i];
            }
        }
        for (int i = 0; i < D; i++)
        {
            Assert.Equal(sumDelta[i], sumSent[i] + ef.Error[i], 1e-3);
        }
        Assert.Equal(20, ef.Rounds);
    }

    [Fact]
    public void Ef14_matches_the_worked_example()
    {
        var ef = new Ef14Compressor(SignCodec.Default, 2);
        Assert.Equal([2f, -2f], Decode(ef, ef.Compress([1f, -3f])));
        Assert.Equal([-1f, -1f], ef.Error.ToArray());
        // e + Δ = (-1,-1) + (3, 0) = (2, -1): scale 1.5
        Assert.Equal([1.5f, -1.5f], Decode(ef, ef.Compress([3f, 0f])));
        Assert.Equal([0.5f, 0.5f], ef.Error.ToArray());
    }

    [Fact]
    public void Ef21_matches_hand_computed_rounds()
    {
        var ef = new Ef21Compressor(SignCodec.Default, 2);
        Assert.Equal([2f, -2f], Decode(ef, ef.Compress([1f, -3f])));
        Assert.Equal([2f, -2f], ef.G.ToArray());
        Assert.Equal([1f, 1f], Decode(ef, ef.Compress([2f, 0f])));
        Assert.Equal([3f, -1f], ef.G.ToArray());
    }

    [Fact]
    public void EControl_matches_hand_computed_rounds()
    {
        var ef = new EControlCompressor(SignCodec.Default, 2, 0.5f, e: [1f, 0f], h: [0f, 0f]);
        Assert.Equal([2.25f, -2.25f], Decode(ef, ef.Compress([1f, -3f])));
        Assert.Equal([-0.25f, -0.75f], ef.E.ToArray());
        Assert.Equal([2.25f, -2.25f], ef.H.ToArray());
        // v = 0.5·(-0.25,-0.75) + (2, 2) - (2.25,-2.25) = (-0.375, 3.875): scale 2.125
        Assert.Equal([-2.125f, 2.125f], Decode(ef, ef.Compress([2f, 2f])));
        // e = (-0.25,-0.75) + (2,2) - (2.25,-2.25) - (-2.125, 2.125) = (1.625, 1.375)
        Assert.Equal([1.625f, 1.375f], ef.E.ToArray());
        Assert.Equal([0.125f, -0.125f], ef.H.ToArray());
    }

    [Fact]
    public void EControl_with_zero_eta_sends_what_Ef21_sends()
    {
        IUpdateCodec codec = UpdateCodecs.Parse("topk:0.1");
        var ef21 = new Ef21Compressor(codec, 200);
        var econtrol = new EControlCompressor(codec, 200, 0f);
        for (int round = 0; round < 10; round++)
        {
            float[] delta = TestData.Gaussian(200, 100 + round);
            Assert.Equal(ef21.Compress(delta), econtrol.Compress(delta));
        }
        Assert.Equal(ef21.G.ToArray(), econtrol.H.ToArray());
    }

    [Fact]
    public void Server_mirror_tracks_the_mean_device_estimate()
    {
        const int D = 50;
        var devices = Enumerable.Range(0, 3).Select(_ => new Ef21Compressor(SignCodec.Default, D)).ToArray();
        var server = new ErrorFeedbackServerState(D);
        for (int round = 0; round < 5; round++)
        {
            foreach ((Ef21Compressor device, int i) in devices.Select((x, i) => (x, i)))
            {
                byte[] message = device.Compress(TestData.Gaussian(D, (round * 10) + i));
                server.Add(Decode(device, message), 1f / devices.Length);
            }
        }
        for (int j = 0; j < D; j++)
        {
            Assert.Equal(devices.Average(x => x.G[j]), server.Estimate[j], 1e-4);
        }
    }

    [Fact]
    public void Rejected_input_leaves_the_state_unchanged()
    {
        var ef = new Ef14Compressor(SignCodec.Default, 3);
        ef.Compress([1f, 2f, -3f]);
        float[] before = ef.Error.ToArray();
        Assert.Throws<ArgumentException>(() => ef.Compress([1f, float.NaN, 0f]));
        Assert.Throws<ArgumentException>(() => ef.Compress([1f, 2f]));
        Assert.Equal(before, ef.Error.ToArray());
        Assert.Equal(1, ef.Rounds);
    }

    public static TheoryData<ErrorFeedbackKind> Kinds => [ErrorFeedbackKind.None, ErrorFeedbackKind.Ef14, ErrorFeedbackKind.Ef21, ErrorFeedbackKind.EControl];

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task State_survives_a_restart_and_continues_identically(ErrorFeedbackKind kind)
    {
        const int D = 1000;
        IUpdateCodec codec = new SignCodec(128);
        ErrorFeedbackCompressor uninterrupted = ErrorFeedbackCompressor.Create(kind, codec, D, eta: 0.1f);
        ErrorFeedbackCompressor restarted = ErrorFeedbackCompressor.Create(kind, codec, D, eta: 0.1f);
        for (int round = 0; round < 3; round++)
        {
            float[] delta = TestData.Gaussian(D, round);
            uninterrupted.Compress(delta);
            restarted.Compress(delta);
        }
        string path = Path.Combine(Path.GetTempPath(), $"fededge-ef-{Guid.NewGuid():N}.state");
        try
        {
            await ErrorFeedbackState.SaveAsync(restarted, path);
            restarted = await ErrorFeedbackState.LoadAsync(path);
        }
        finally
        {
            File.Delete(path);
        }
        Assert.Equal(kind, restarted.Kind);
        Assert.Equal(codec.Spec, restarted.Codec.Spec);
        Assert.Equal(3, restarted.Rounds);
        Assert.Equal(uninterrupted.Eta, restarted.Eta);
        for (int round = 3; round < 6; round++)
        {
            float[] delta = TestData.Gaussian(D, round);
            Assert.Equal(uninterrupted.Compress(delta), restarted.Compress(delta));
        }
        Assert.Equal(ErrorFeedbackState.Serialize(uninterrupted), ErrorFeedbackState.Serialize(restarted));
    }

    [Fact]
    public void Corrupted_or_truncated_state_is_rejected_with_a_reason()
    {
        var ef = new EControlCompressor(Fp16Codec.Instance, 40, 0.2f);
        ef.Compress(TestData.Gaussian(40, 1));
        byte[] good = ErrorFeedbackState.Serialize(ef);
        Assert.True(ErrorFeedbackState.TryDeserialize(good, out _).IsValid);
        for (int i = 0; i < good.Length; i++)
        {
            byte[] bad = [.. good];
            bad[i] ^= 0x10;
            PayloadCheck check = ErrorFeedbackState.TryDeserialize(bad, out ErrorFeedbackCompressor? state);
            Assert.False(check.IsValid, $"flip at byte {i} accepted");
            Assert.Null(state);
            Assert.Contains(check.Error, new[] { PayloadError.BadChecksum, PayloadError.Malformed, PayloadError.UnsupportedVersion });
        }
        Assert.Equal(PayloadError.BadChecksum, ErrorFeedbackState.TryDeserialize(good.AsSpan(0, good.Length - 1), out _).Error);
        Assert.Equal(PayloadError.Truncated, ErrorFeedbackState.TryDeserialize(good.AsSpan(0, 20), out _).Error);
    }

    [Fact]
    public async Task Loading_a_corrupt_file_names_the_problem()
    {
        string path = Path.Combine(Path.GetTempPath(), $"fededge-ef-{Guid.NewGuid():N}.state");
        try
        {
            await File.WriteAllBytesAsync(path, new byte[100]);
            InvalidDataException e = await Assert.ThrowsAsync<InvalidDataException>(() => ErrorFeedbackState.LoadAsync(path));
            Assert.Contains("magic", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
