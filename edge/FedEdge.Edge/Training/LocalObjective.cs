using FedEdge.Aggregation.Surrogates;
using FedEdge.Data;
using FedEdge.Training;

namespace FedEdge.Edge.Training;

/// <summary>
/// The device's local objective f_i (mean loss over its training data) through its <see cref="OnnxTrainer"/>, for
/// FedMM's statistics (full-data gradient, features) and FAR-SIGN's answers (mini-batch gradient or losses at probe
/// points). The data are copied into flat arrays once per data set.
/// </summary>
public sealed class LocalObjective : IDeviceObjective
{
    private readonly float[] _features;
    private readonly long[] _labels;
    private float[] _batchFeatures = [];
    private long[] _batchLabels = [];

    internal LocalObjective(OnnxTrainer trainer, Dataset data)
    {
        Trainer = trainer;
        Data = data;
        _features = new float[data.Count * data.SampleSize];
        _labels = new long[data.Count];
        data.CopyRange(0, data.Count, _features, _labels);
    }

    internal OnnxTrainer Trainer { get; }

    internal Dataset Data { get; }

    public int SampleCount => _labels.Length;

    public int FeatureSize => Data.SampleSize;

    public ReadOnlySpan<float> Features => _features;

    public int ParameterCount => Trainer.ParameterCount;

    /// <summary>Outputs of the model (classes).</summary>
    public int ClassCount => Trainer.ClassCount;

    /// <summary>The mean loss of the last full-data <see cref="Gradient"/> (NaN before one).</summary>
    public double LastLoss { get; private set; } = double.NaN;

    public double Gradient(ReadOnlySpan<float> parameters, Span<float> gradient) =>
        LastLoss = Trainer.ComputeGradient(parameters, _features, _labels, gradient);

    /// <summary>Draws a mini-batch of <paramref name="size"/> samples (without replacement) for the batch probes below.</summary>
    public void DrawBatch(Random random, int size)
    {
        size = Math.Min(size, SampleCount);
        if (_batchLabels.Length != size)
        {
            _batchFeatures = new float[size * FeatureSize];
            _batchLabels = new long[size];
        }

        var order = Enumerable.Range(0, SampleCount).ToArray();
        random.Shuffle(order);
        Data.CopyBatch(order.AsSpan(0, size), _batchFeatures, _batchLabels);
    }

    /// <summary>Mean loss and gradient over the batch drawn by <see cref="DrawBatch"/>.</summary>
    public double BatchGradient(ReadOnlySpan<float> parameters, Span<float> gradient) =>
        Trainer.ComputeGradient(parameters, _batchFeatures, _batchLabels, gradient);

    /// <summary>Mean loss over the batch drawn by <see cref="DrawBatch"/> at <paramref name="parameters"/>.</summary>
    public double BatchLoss(ReadOnlySpan<float> parameters) => Trainer.EvaluateLoss(parameters, _batchFeatures, _batchLabels);
}
