using System.Numerics.Tensors;

namespace FedEdge.Drift;

/// <summary>
/// What a device knows about one time window of its data, computed on the device: the label histogram (P(y)), the
/// per-feature mean and variance (P(x)), the mean cross-entropy of the reference model, and the FedDAA
/// <see cref="Prototype"/> (per-label mean logits, arXiv 2506.21054). Only these aggregates leave the device; raw
/// samples and per-sample losses do not.
/// </summary>
public sealed record WindowStatistics(int Count, float[] LabelHistogram, float[] FeatureMean, float[] FeatureVariance, double MeanLoss, Prototype Prototype)
{
    /// <summary>
    /// Computes the statistics of a window: <paramref name="features"/> n × F, <paramref name="labels"/> n, and the
    /// reference model's <paramref name="logits"/> n × D on the same samples.
    /// </summary>
    public static WindowStatistics Compute(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, ReadOnlySpan<float> logits, int labelCount, int outputDimension)
    {
        var n = labels.Length;
        if (n == 0)
        {
            throw new ArgumentException("A drift window needs at least one sample.", nameof(labels));
        }

        if (features.Length % n != 0)
        {
            throw new ArgumentException($"{features.Length} feature values do not split into {n} samples.", nameof(features));
        }

        var f = features.Length / n;
        var prototype = Prototype.FromLogits(logits, labels, labelCount, outputDimension);
        var histogram = new float[labelCount];
        for (var r = 0; r < labelCount; r++)
        {
            histogram[r] = prototype.Counts[r] / (float)n;
        }

        // Σx and Σx² per feature in double-free float with the two-pass formula: mean first, then squared deviations,
        // which is exact enough for pixel data and avoids E[x²] − E[x]² cancellation.
        var mean = new float[f];
        for (var i = 0; i < n; i++)
        {
            TensorPrimitives.Add(mean, features.Slice(i * f, f), mean);
        }

        TensorPrimitives.Multiply(mean, 1f / n, mean);
        var variance = new float[f];
        var deviation = new float[f];
        for (var i = 0; i < n; i++)
        {
            TensorPrimitives.Subtract(features.Slice(i * f, f), mean, deviation);
            TensorPrimitives.MultiplyAdd(deviation, deviation, variance, variance);
        }

        TensorPrimitives.Multiply(variance, 1f / n, variance);
        double loss = 0;
        for (var i = 0; i < n; i++)
        {
            loss += LogitMath.CrossEntropy(logits.Slice(i * outputDimension, outputDimension), (int)labels[i]);
        }

        return new WindowStatistics(n, histogram, mean, variance, loss / n, prototype);
    }

    /// <summary>Total-variation distance ½·Σ_r |p_r − q_r| between two label histograms (0: same P(y), 1: disjoint).</summary>
    public static float LabelShift(WindowStatistics previous, WindowStatistics current)
    {
        ArgumentNullException.ThrowIfNull(previous);
        ArgumentNullException.ThrowIfNull(current);
        CheckSameShape(previous.LabelHistogram.Length, current.LabelHistogram.Length, "label histograms");
        var sum = 0f;
        for (var r = 0; r < previous.LabelHistogram.Length; r++)
        {
            sum += MathF.Abs(previous.LabelHistogram[r] - current.LabelHistogram[r]);
        }

        return sum / 2;
    }

    /// <summary>
    /// Mean over features of the standardised mean difference |μ_f − μ'_f| / √((σ²_f + σ'²_f)/2 + ε) (Cohen's d per
    /// feature, averaged): about √(2/n)·0.8 for two samples of one distribution, order 1 when P(x) moved.
    /// </summary>
    public static float FeatureShift(WindowStatistics previous, WindowStatistics current, float epsilon = 1e-3f)
    {
        ArgumentNullException.ThrowIfNull(previous);
        ArgumentNullException.ThrowIfNull(current);
        var f = previous.FeatureMean.Length;
        CheckSameShape(f, current.FeatureMean.Length, "feature means");
        var sum = 0.0;
        for (var j = 0; j < f; j++)
        {
            var pooled = (previous.FeatureVariance[j] + current.FeatureVariance[j]) / 2 + epsilon;
            sum += MathF.Abs(previous.FeatureMean[j] - current.FeatureMean[j]) / MathF.Sqrt(pooled);
        }

        return (float)(sum / f);
    }

    private static void CheckSameShape(int a, int b, string what)
    {
        if (a != b)
        {
            throw new ArgumentException($"The two windows' {what} have different lengths ({a} and {b}).");
        }
    }
}

/// <summary>Numerics on logits shared by the drift statistics and the soft assignment.</summary>
public static class LogitMath
{
    /// <summary>Cross-entropy −log softmax(z)_y = logsumexp(z) − z_y, computed stably.</summary>
    public static float CrossEntropy(ReadOnlySpan<float> logits, int label)
    {
        if ((uint)label >= (uint)logits.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(label), $"Label {label} is outside the {logits.Length} logits.");
        }

        var max = TensorPrimitives.Max(logits);
        var sum = 0f;
        foreach (var z in logits)
        {
            sum += MathF.Exp(z - max);
        }

        return max + MathF.Log(sum) - logits[label];
    }

    /// <summary>Per-sample cross-entropy of n × D logits into <paramref name="losses"/> (n).</summary>
    public static void CrossEntropy(ReadOnlySpan<float> logits, ReadOnlySpan<long> labels, Span<float> losses)
    {
        var n = labels.Length;
        if (n == 0)
        {
            return;
        }

        var d = logits.Length / n;
        if (d * n != logits.Length || losses.Length < n)
        {
            throw new ArgumentException($"{n} samples need n × D logits and {n} loss slots; got {logits.Length} logits and {losses.Length} slots.");
        }

        for (var i = 0; i < n; i++)
        {
            losses[i] = CrossEntropy(logits.Slice(i * d, d), (int)labels[i]);
        }
    }

    /// <summary>In-place softmax of one row.</summary>
    public static void Softmax(Span<float> values) => TensorPrimitives.SoftMax(values, values);
}
