using FedEdge.Onnx.Proto;
using FedEdge.Training;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Drift;

/// <summary>
/// Forward pass of an ONNX classifier for any flat parameter vector (the layout of <see cref="OnnxTrainer"/>): the
/// model's float initializers become graph inputs, so one session serves every cluster model and no session is built
/// when parameters change. Drift statistics (prototypes, per-sample losses for the soft assignment) need logits,
/// which the trainer's evaluation graph does not return.
/// </summary>
public sealed class ModelLogits : IDisposable
{
    private const int Chunk = 512;
    private readonly InferenceSession _session;
    private readonly ModelLayout _layout;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly float[] _features;

    public ModelLogits(ModelProto model, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(model);
        _layout = ModelLayout.Analyze(model);
        var graphModel = model.Clone();
        var managed = _layout.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var initializers = graphModel.Graph.Initializer.Where(t => !managed.Contains(t.Name)).ToList();
        graphModel.Graph.Initializer.Clear();
        graphModel.Graph.Initializer.AddRange(initializers);
        foreach (var input in graphModel.Graph.Input.Where(i => managed.Contains(i.Name)).ToList())
        {
            graphModel.Graph.Input.Remove(input);
        }

        foreach (var t in _layout.Tensors)
        {
            graphModel.Graph.Input.Add(FedEdge.Onnx.GraphBuilder.TensorInfo(t.Name, TensorProto.Types.DataType.Float, [.. t.Dims.Cast<object>()]));
        }

        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        _session = new InferenceSession(graphModel.ToByteArray(), options);
        _inputNames = [_layout.InputName, .. _layout.Tensors.Select(t => t.Name)];
        _outputNames = [_layout.OutputName];
        _features = new float[Chunk * _layout.SampleSize];
        ClassCount = (int)_session.OutputMetadata[_layout.OutputName].Dimensions[^1];
    }

    public int ParameterCount => _layout.ParameterCount;

    public int SampleSize => _layout.SampleSize;

    /// <summary>Width of the logits (classes).</summary>
    public int ClassCount { get; }

    /// <summary>Logits (n × <see cref="ClassCount"/>) of the model with <paramref name="parameters"/> on n samples.</summary>
    public void Compute(float[] parameters, ReadOnlySpan<float> features, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.Length != ParameterCount)
        {
            throw new ArgumentException($"The model has {ParameterCount} parameters; got {parameters.Length}.", nameof(parameters));
        }

        var n = features.Length / SampleSize;
        if (n * SampleSize != features.Length || logits.Length < n * ClassCount)
        {
            throw new ArgumentException($"{features.Length} feature values must be whole samples of {SampleSize}, with room for n × {ClassCount} logits (got {logits.Length}).");
        }

        var values = new List<OrtValue>(_inputNames.Length);
        try
        {
            values.Add(null!);
            foreach (var t in _layout.Tensors)
            {
                values.Add(OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(parameters, t.Offset, t.Length), t.Dims));
            }

            long[] shape = [0, .. _layout.SampleShape.Select(d => (long)d)];
            using var runOptions = new RunOptions();
            for (var start = 0; start < n; start += Chunk)
            {
                var count = Math.Min(Chunk, n - start);
                features.Slice(start * SampleSize, count * SampleSize).CopyTo(_features);
                shape[0] = count;
                using var x = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_features, 0, count * SampleSize), shape);
                values[0] = x;
                using var outputs = _session.Run(runOptions, _inputNames, values, _outputNames);
                outputs[0].GetTensorDataAsSpan<float>()[..(count * ClassCount)].CopyTo(logits.Slice(start * ClassCount, count * ClassCount));
            }
        }
        finally
        {
            for (var i = 1; i < values.Count; i++)
            {
                values[i].Dispose();
            }
        }
    }

    public void Dispose() => _session.Dispose();
}
