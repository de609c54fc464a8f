using FedEdge.Aggregation.Surrogates;

namespace FedEdge.Training;

/// <summary>
/// A device's local objective f_i for FedMM's surrogates (<see cref="IDeviceObjective"/>): the trainer's mean loss and
/// gradient over the device's whole labelled set, at any θ (<see cref="OnnxTrainer.ComputeGradient(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{long}, Span{float})"/>:
/// no optimizer step, the trainer's own parameters do not change). Features are the raw samples (N × sample size),
/// as the model reads them; a surrogate that needs the Linear layer's inputs applies the model's standardisation itself.
/// FAR-SIGN's answers read one mini-batch of the same data (<see cref="DrawBatch"/>).
/// </summary>
public sealed class OnnxDeviceObjective : IDeviceObjective
{
    private readonly OnnxTrainer _trainer;
    private readonly float[] _features;
    private readonly long[] _labels;
    private float[] _batchFeatures = [];
    private long[] _batchLabels = [];

    public OnnxDeviceObjective(OnnxTrainer trainer, float[] features, long[] labels)
    {
        _trainer = trainer ?? throw new ArgumentNullException(nameof(trainer));
        _features = features ?? throw new ArgumentNullException(nameof(features));
        _labels = labels ?? throw new ArgumentNullException(nameof(labels));
        FeatureSize = trainer.SampleShape.Aggregate(1, (a, b) => a * b);
        if (labels.Length == 0 || (long)labels.Length * FeatureSize != features.Length)
        {
            throw new ArgumentException($"{features.Length} feature values and {labels.Length} labels do not make samples of {FeatureSize} values.", nameof(features));
        }
    }

    public int SampleCount => _labels.Length;

    public int FeatureSize { get; }

    public ReadOnlySpan<float> Features => _features;

    /// <summary>d, the model's parameters.</summary>
    public int ParameterCount => _trainer.ParameterCount;

    /// <summary>Outputs of the model (classes).</summary>
    public int ClassCount => _trainer.ClassCount;

    /// <summary>The trainer the objective runs on.</summary>
    public OnnxTrainer Trainer => _trainer;

    /// <summary>The mean loss of the last full-data <see cref="Gradient"/> (NaN before one).</summary>
    public double LastLoss { get; private set; } = double.NaN;

    public double Gradient(ReadOnlySpan<float> parameters, Span<float> gradient) =>
        LastLoss = _trainer.ComputeGradient(parameters, _features, _labels, gradient);

    /// <summary>Draws a mini-batch of <paramref name="size"/> samples without replacement (FAR-SIGN answers one batch per message).</summary>
    public void DrawBatch(Random random, int size)
    {
        ArgumentNullException.ThrowIfNull(random);
        size = Math.Clamp(size, 1, SampleCount);
        if (_batchLabels.Length != size)
        {
            _batchFeatures = new float[size * FeatureSize];
            _batchLabels = new long[size];
        }

        var order = Enumerable.Range(0, SampleCount).ToArray();
        random.Shuffle(order);
        for (var i = 0; i < size; i++)
        {
            _features.AsSpan(order[i] * FeatureSize, FeatureSize).CopyTo(_batchFeatures.AsSpan(i * FeatureSize));
            _batchLabels[i] = _labels[order[i]];
        }
    }

    /// <summary>Mean loss and gradient over the batch drawn by <see cref="DrawBatch"/>.</summary>
    public double BatchGradient(ReadOnlySpan<float> parameters, Span<float> gradient) =>
        _trainer.ComputeGradient(parameters, _batchFeatures, _batchLabels, gradient);

    /// <summary>Mean loss over the batch drawn by <see cref="DrawBatch"/> at <paramref name="parameters"/> (zeroth order).</summary>
    public double BatchLoss(ReadOnlySpan<float> parameters) => _trainer.EvaluateLoss(parameters, _batchFeatures, _batchLabels);
}
