using FedEdge.Compression;

namespace FedEdge.Protocol.Tests;

internal static class TestData
{
    public static float[] Gaussian(int d, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[d];
        for (int i = 0; i < d; i++)
        {
            // Box-Muller
            double u1 = 1.0 - random.NextDouble();
            double u2 = random.NextDouble();
            values[i] = scale * (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return values;
    }

    public static IUpdateCodec[] AllCodecs() =>
    [
        Fp32Codec.Instance,
        Fp16Codec.Instance,
        new TopKCodec(0.1),
        new TopKCodec(0.25, TopKValueFormat.Fp16),
        SignCodec.Default,
        new SignCodec(16),
        new SignCodec(8, [5, 11, 3, 13]),
    ];

    public static float[] Decode(IUpdateCodec codec, ReadOnlySpan<byte> payload)
    {
        PayloadCheck check = codec.Decode(payload, out float[]? values);
        Assert.True(check.IsValid, check.ToString());
        return values!;
    }
}
