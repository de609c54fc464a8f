using FedEdge.Training.Autodiff;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Training.Engine;

/// <summary>
/// Forward, loss and flat gradient for one batch size, without an optimizer step (<see cref="TrainingGraphBuilder.BuildGradient"/>):
/// what the surrogate statistics of FedMM (s = Lθ − ∇f(θ)) and the first-order answers of FAR-SIGN (sign⟨∇f, u⟩) need.
/// Parameters are bound from whichever buffer the caller passes, so a probe point costs no copy into the trainer.
/// </summary>
internal sealed class GradientRunner : IDisposable
{
    private readonly InferenceSession _session;
    private readonly TrainingGraph _graph;
    private readonly float[] _features;
    private readonly long[] _labels;
    private readonly float[] _loss = new float[1];
    private readonly float[] _gradient;
    private readonly OrtValue _featureValue;
    private readonly OrtValue _labelValue;
    private readonly OrtValue _lossValue;
    private readonly OrtValue _gradientValue;
    private readonly RunOptions _runOptions = new();

    public GradientRunner(TrainingGraph graph, SessionOptions options, int parameterCount)
    {
        _graph = graph;
        _session = ValueShapes.CreateSession(graph.Model, options);
        var batch = graph.BatchSize;
        var sample = graph.Layout.SampleSize;
        _features = new float[batch * sample];
        _labels = new long[batch];
        _gradient = new float[parameterCount];
        _featureValue = OrtValue.CreateTensorValueFromMemory(_features, [batch, .. graph.Layout.SampleShape.Select(d => (long)d)]);
        _labelValue = OrtValue.CreateTensorValueFromMemory(_labels, [batch]);
        _lossValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_loss), []);
        _gradientValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_gradient), [parameterCount]);
    }

    public int BatchSize => _graph.BatchSize;

    /// <summary>Runs one batch at <paramref name="parameters"/> (one value per managed tensor); the gradient is the
    /// batch's contribution scaled by the graph's loss batch size (see <see cref="TrainingGraphBuilder.BuildGradient"/>).</summary>
    public ReadOnlySpan<float> Run(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, OrtValue[] parameters, out float loss)
    {
        features.CopyTo(_features);
        labels.CopyTo(_labels);
        using var binding = _session.CreateIoBinding();
        binding.BindInput(_graph.FeaturesInput, _featureValue);
        binding.BindInput(_graph.LabelsInput, _labelValue);
        var tensors = _graph.Layout.Tensors;
        for (var i = 0; i < tensors.Count; i++)
        {
            binding.BindInput(tensors[i].Name, parameters[i]);
        }

        binding.BindOutput(_graph.LossOutput, _lossValue);
        binding.BindOutput(_graph.GradientOutput!, _gradientValue);
        _session.RunWithBinding(_runOptions, binding);
        loss = _loss[0];
        return _gradient;
    }

    public void Dispose()
    {
        _session.Dispose();
        _runOptions.Dispose();
        _featureValue.Dispose();
        _labelValue.Dispose();
        _lossValue.Dispose();
        _gradientValue.Dispose();
    }
}
