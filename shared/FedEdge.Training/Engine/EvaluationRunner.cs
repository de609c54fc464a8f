using FedEdge.Training.Autodiff;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Training.Engine;

/// <summary>Runs the evaluation graph over a data set in chunks, with parameters bound from any buffer.</summary>
internal sealed class EvaluationRunner : IDisposable
{
    private readonly EvaluationGraph _graph;
    private readonly InferenceSession _session;
    private readonly float[] _lossSum = new float[1];
    private readonly long[] _correct = new long[1];
    private readonly OrtValue _lossValue;
    private readonly OrtValue _correctValue;
    private float[] _features = [];
    private long[] _labels = [];

    public EvaluationRunner(EvaluationGraph graph, SessionOptions options)
    {
        _graph = graph;
        _session = ValueShapes.CreateSession(graph.Model, options);
        _lossValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_lossSum), []);
        _correctValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<long>(_correct), []);
    }

    public (double LossSum, long Correct) Run(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, OrtValue[] parameters, int batchSize, int sampleSize)
    {
        batchSize = Math.Max(1, Math.Min(batchSize, labels.Length));
        if (_labels.Length < batchSize)
        {
            _features = new float[batchSize * sampleSize];
            _labels = new long[batchSize];
        }

        using var binding = _session.CreateIoBinding();
        var tensors = _graph.Layout.Tensors;
        for (var i = 0; i < tensors.Count; i++)
        {
            binding.BindInput(tensors[i].Name, parameters[i]);
        }

        binding.BindOutput(_graph.LossSumOutput, _lossValue);
        binding.BindOutput(_graph.CorrectOutput, _correctValue);
        using var runOptions = new RunOptions();
        double lossSum = 0;
        long correct = 0;
        long[] shape = [0, .. _graph.Layout.SampleShape.Select(d => (long)d)];
        for (var start = 0; start < labels.Length; start += batchSize)
        {
            var n = Math.Min(batchSize, labels.Length - start);
            features.Slice(start * sampleSize, n * sampleSize).CopyTo(_features);
            labels.Slice(start, n).CopyTo(_labels);
            shape[0] = n;
            using var x = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_features, 0, n * sampleSize), shape);
            using var y = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<long>(_labels, 0, n), [n]);
            binding.BindInput(_graph.Layout.InputName, x);
            binding.BindInput(_graph.LabelsInput, y);
            _session.RunWithBinding(runOptions, binding);
            lossSum += _lossSum[0];
            correct += _correct[0];
        }

        return (lossSum, correct);
    }

    public void Dispose()
    {
        _session.Dispose();
        _lossValue.Dispose();
        _correctValue.Dispose();
    }
}
