using FedEdge.Aggregation.Surrogates;

namespace FedEdge.Training;

/// <summary>
/// A device's local objective f_i for FedMM's surrogates (<see cref="IDeviceObjective"/>): the trainer's mean loss and
/// gradient over the device's whole labelled set, at any θ (<see cref="OnnxTrainer.ComputeGradient(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{long}, Span{float})"/>:
/// no optimizer step, the trainer's own parameters do not change). Features are the raw samples (N × sample size),
/// as the model reads them; a surrogate that needs the Linear layer's inputs applies the model's standardisation itself.
/// </summary>
public sealed class OnnxDeviceObjective : IDeviceObjective
{
    private readonly OnnxTrainer _trainer;
    private readonly float[] _features;
    private readonly long[] _labels;

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

    public double Gradient(ReadOnlySpan<float> parameters, Span<float> gradient) =>
        _trainer.ComputeGradient(parameters, _features, _labels, gradient);
}
