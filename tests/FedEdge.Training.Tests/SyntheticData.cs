namespace FedEdge.Training.Tests;

/// <summary>Separable synthetic classification data: class c has mean 1 on the c-th contiguous block of features.</summary>
internal static class SyntheticData
{
    public static (float[] Features, long[] Labels) Blobs(int count, int sampleSize, int classes, int seed)
    {
        var random = new Random(seed);
        var x = new float[count * sampleSize];
        var y = new long[count];
        for (var i = 0; i < count; i++)
        {
            var label = random.Next(classes);
            y[i] = label;
            for (var j = 0; j < sampleSize; j++)
            {
                var mean = j * classes / sampleSize == label ? 1.0 : 0.0;
                x[i * sampleSize + j] = (float)(mean + 0.5 * Gaussian(random));
            }
        }

        return (x, y);
    }

    public static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
