using System.Numerics.Tensors;
using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Training.Autodiff;
using FedEdge.Training.Engine;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Training;

/// <summary>
/// Trains an ONNX model with ONNX Runtime: each <see cref="TrainStep"/> runs one generated graph
/// (forward, loss, gradients, optimizer update). Parameters and optimizer state sit in two
/// preallocated buffers bound with <see cref="OrtIoBinding"/>; a step reads one and writes the next,
/// then the roles rotate, so no tensor is copied between steps. Three rotating buffers (not two) keep
/// the weights from before the previous step intact, so a non-finite loss can roll back to the last
/// weights whose loss was finite. See docs/training-engine.md.
/// </summary>
public sealed class OnnxTrainer : IDisposable
{
    private readonly ModelProto _model;
    private readonly TrainingOptions _options;
    private readonly ModelLayout _layout;
    private readonly SessionOptions _sessionOptions;
    private const int Sides = 3;
    private readonly float[][] _parameters = new float[Sides][];
    private readonly float[][] _state = new float[Sides][];
    private readonly float[] _anchor;
    private readonly float[] _scalars = new float[2]; // [learning rate (Adam: η/(1−β₁ᵗ)), Adam 1/√(1−β₂ᵗ)]
    private readonly OrtValue[][] _parameterValues = new OrtValue[Sides][];
    private readonly OrtValue[] _flatParameterValues = new OrtValue[Sides]; // whole vector (flat step graphs)
    private readonly OrtValue[] _anchorValues;
    private readonly OrtValue _flatAnchorValue;
    private readonly OrtValue _learningRateValue;
    private readonly OrtValue _adamValue;
    private readonly Dictionary<int, StepRunner> _steps = [];
    private readonly ZerothOrderEstimator? _zeroth;
    private EvaluationRunner? _evaluation;
    private int _current;
    private int _previous = -1; // side holding the weights before the last step, while still intact
    private bool _disposed;

    private OnnxTrainer(ModelProto model, TrainingOptions options)
    {
        options.Validate();
        _model = model.Clone();
        ModelLayout.SeparateBatchNormStatistics(_model.Graph);
        _options = options;
        _layout = ModelLayout.Analyze(_model);
        if (_layout.ClassCount <= 0)
        {
            // The model does not declare its output width: run it once on one zero sample to see it.
            var probeGraph = _model.Graph.Clone();
            var shapes = ValueShapes.Probe(probeGraph, _model.OpsetImport, new Dictionary<string, TensorShape>
            {
                [_layout.InputName] = new(TensorProto.Types.DataType.Float, [1, .. _layout.SampleShape.Select(d => (long)d)]),
            });
            var dims = shapes[_layout.OutputName].Dims;
            _layout.ClassCount = dims.Length == 2 ? (int)dims[1]
                : throw new OnnxFormatException($"The model output '{_layout.OutputName}' must be [batch, classes]; it is [{string.Join(", ", dims)}].");
        }

        _sessionOptions = ExecutionProviders.Create(options, out var provider);
        ExecutionProvider = provider;
        LearningRate = options.LearningRate;

        var count = _layout.ParameterCount;
        var initial = new float[count];
        var byName = _model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var t in _layout.Tensors)
        {
            byName[t.Name].CopyFloatsTo(initial.AsSpan(t.Offset, t.Length));
        }

        _anchor = new float[count];
        var stateLength = TrainingGraphBuilder.StateLength(options, _layout);
        for (var side = 0; side < Sides; side++)
        {
            _parameters[side] = side == 0 ? initial : new float[count];
            _state[side] = new float[stateLength];
        }

        for (var side = 0; side < Sides; side++)
        {
            _parameterValues[side] = [.. _layout.Tensors.Select(t => Slice(_parameters[side], t.Offset, t.Length, t.Dims))];
            _flatParameterValues[side] = Slice(_parameters[side], 0, count, [count]);
        }

        _anchorValues = [.. _layout.Tensors.Select(t => Slice(_anchor, t.Offset, t.Length, t.Dims))];
        _flatAnchorValue = Slice(_anchor, 0, count, [count]);
        _learningRateValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_scalars, 0, 1), []);
        _adamValue = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_scalars, 1, 1), []);
        if (options.ZerothOrder)
        {
            _zeroth = new ZerothOrderEstimator(this);
        }
        else
        {
            // Build the main step graph now so that an unsupported op is reported at creation.
            GetStep(options.BatchSize);
        }
    }

    /// <summary>Creates a trainer for <paramref name="model"/>; throws <see cref="UnsupportedOperatorException"/>
    /// (gradient mode) or <see cref="OnnxFormatException"/> for models it cannot train.</summary>
    public static OnnxTrainer Create(ModelProto model, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        return new OnnxTrainer(model, options);
    }

    public TrainingOptions Options => _options;

    /// <summary>"CPU" or "CUDA": the execution provider the sessions use.</summary>
    public string ExecutionProvider { get; }

    /// <summary>Length of the flat parameter vector (trainable tensors and buffers, initializer order).</summary>
    public int ParameterCount => _layout.ParameterCount;

    /// <summary>The tensors in the flat vector, with their offsets.</summary>
    public IReadOnlyList<ManagedTensor> Parameters => _layout.Tensors;

    /// <summary>Shape of one input sample (e.g. [1, 28, 28]).</summary>
    public IReadOnlyList<int> SampleShape => _layout.SampleShape;

    /// <summary>Number of classes (the output's second axis).</summary>
    public int ClassCount => _layout.ClassCount;

    /// <summary>Learning rate for the following steps.</summary>
    public float LearningRate { get; set; }

    /// <summary>Optimizer steps applied so far (Adam's t).</summary>
    public long StepCount { get; private set; }

    /// <summary>
    /// Runs one training step on a batch of <c>labels.Length</c> samples and returns the batch's mean
    /// loss before the update. If the updated parameters are not finite, the update is discarded and NaN
    /// is returned. If the loss is not finite, the current weights are themselves bad: the update is
    /// discarded, the weights (and optimizer state) roll back to those before the previous step — the
    /// last weights whose loss was finite — and the non-finite loss is returned.
    /// </summary>
    public float TrainStep(ReadOnlySpan<float> features, ReadOnlySpan<long> labels)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var batch = labels.Length;
        ValidateBatch(features, labels);
        if (_zeroth is not null)
        {
            return _zeroth.Step(features, labels);
        }

        var step = GetStep(batch);
        features.CopyTo(step.Features);
        labels.CopyTo(step.Labels);
        PrepareScalars();
        step.Session.RunWithBinding(step.RunOptions, step.Bindings[_current]);
        var loss = step.Loss[0];
        return Commit(loss);
    }

    /// <summary>Mean loss and accuracy of the current parameters on a labelled set (inference mode).</summary>
    public EvaluationResult Evaluate(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, int batchSize = 256)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateBatch(features, labels);
        var (lossSum, correct) = EvaluateSum(features, labels, _parameterValues[_current], batchSize);
        return labels.Length == 0 ? default : new EvaluationResult(lossSum / labels.Length, (double)correct / labels.Length, labels.Length);
    }

    /// <summary>Copies the flat parameter vector (see <see cref="Parameters"/>) into <paramref name="destination"/>.</summary>
    public void CopyParametersTo(Span<float> destination)
    {
        CheckLength(destination.Length);
        _parameters[_current].CopyTo(destination);
    }

    /// <summary>Replaces the parameters with a flat vector (e.g. the federation's global model).</summary>
    public void SetParameters(ReadOnlySpan<float> parameters)
    {
        CheckLength(parameters.Length);
        parameters.CopyTo(_parameters[_current]);
        _previous = -1;
    }

    /// <summary>Sets FedProx's w_global (flat vector); the proximal term needs <see cref="TrainingOptions.ProximalMu"/> &gt; 0.</summary>
    public void SetProximalAnchor(ReadOnlySpan<float> anchor)
    {
        CheckLength(anchor.Length);
        if (_options.ProximalMu <= 0)
        {
            throw new InvalidOperationException("SetProximalAnchor needs TrainingOptions.ProximalMu > 0.");
        }

        anchor.CopyTo(_anchor);
    }

    /// <summary>Zeroes momentum / Adam moments and the step count (e.g. at the start of a federated round).</summary>
    public void ResetOptimizerState()
    {
        foreach (var state in _state)
        {
            Array.Clear(state);
        }

        StepCount = 0;
    }

    /// <summary>The original inference graph with the current parameters as initializers.</summary>
    public ModelProto ExportModel()
    {
        var model = _model.Clone();
        var byName = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var t in _layout.Tensors)
        {
            byName[t.Name].SetFloats(_parameters[_current].AsSpan(t.Offset, t.Length));
        }

        return model;
    }

    /// <summary>The generated step graph for a batch size (for inspection and tests).</summary>
    public ModelProto GetTrainingGraph(int batchSize) => GetStep(batchSize).Graph.Model;

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var s in _steps.Values)
        {
            s.Dispose();
        }

        _evaluation?.Dispose();
        _zeroth?.Dispose();
        foreach (var v in _parameterValues.SelectMany(x => x).Concat(_flatParameterValues).Concat(_anchorValues).Append(_flatAnchorValue))
        {
            v.Dispose();
        }

        _learningRateValue.Dispose();
        _adamValue.Dispose();
        _sessionOptions.Dispose();
    }

    internal ModelProto Model => _model;

    internal ModelLayout Layout => _layout;

    internal float[] CurrentParameters => _parameters[_current];

    internal SessionOptions SessionOptions => _sessionOptions;

    internal (double LossSum, long Correct) EvaluateSum(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, OrtValue[] parameters, int batchSize)
    {
        _evaluation ??= new EvaluationRunner(TrainingGraphBuilder.BuildEvaluation(_model, _options.Loss), _sessionOptions);
        return _evaluation.Run(features, labels, parameters, batchSize, _layout.SampleSize);
    }

    /// <summary>Side written by a step that reads <paramref name="side"/>.</summary>
    private static int Next(int side) => (side + 1) % Sides;

    /// <summary>Binds parameters, optimizer state and scalars reading <paramref name="side"/> and writing the next side
    /// (shared by the step and optimizer-only graphs). The state views it creates are added to <paramref name="owned"/>,
    /// which the caller disposes with the binding.</summary>
    internal void BindCommon(OrtIoBinding binding, TrainingGraph graph, int side, List<OrtValue> owned)
    {
        for (var i = 0; i < _layout.Tensors.Count; i++)
        {
            binding.BindInput(_layout.Tensors[i].Name, _parameterValues[side][i]);
            if (graph.NextOutputs.Count > 0)
            {
                binding.BindOutput(graph.NextOutputs[i], _parameterValues[Next(side)][i]);
            }

            if (graph.AnchorInputs[i] is { } anchor)
            {
                binding.BindInput(anchor, _anchorValues[i]);
            }
        }

        if (graph.FlatParametersInput is { } flatInput)
        {
            binding.BindInput(flatInput, _flatParameterValues[side]);
            binding.BindOutput(graph.FlatNextOutput!, _flatParameterValues[Next(side)]);
            if (graph.FlatAnchorInput is { } flatAnchor)
            {
                binding.BindInput(flatAnchor, _flatAnchorValue);
            }
        }

        foreach (var slot in graph.State)
        {
            var input = Slice(_state[side], slot.Offset, slot.Length, slot.Dims);
            var output = Slice(_state[Next(side)], slot.Offset, slot.Length, slot.Dims);
            owned.Add(input);
            owned.Add(output);
            binding.BindInput(slot.Input, input);
            binding.BindOutput(slot.Output, output);
        }

        binding.BindInput(graph.LearningRateInput, _learningRateValue);
        if (graph.AdamCorrectionInput is { } adam)
        {
            binding.BindInput(adam, _adamValue);
        }
    }

    internal int CurrentSide => _current;

    internal const int SideCount = Sides;

    internal void PrepareScalars()
    {
        if (_options.Optimizer == OptimizerKind.Adam)
        {
            var t = StepCount + 1;
            _scalars[0] = (float)(LearningRate / (1 - Math.Pow(_options.AdamBeta1, t)));
            _scalars[1] = (float)(1 / Math.Sqrt(1 - Math.Pow(_options.AdamBeta2, t)));
        }
        else
        {
            _scalars[0] = LearningRate;
        }
    }

    /// <summary>Makes the freshly written side current, or discards it (and rolls back on a non-finite loss).</summary>
    internal float Commit(float loss)
    {
        var next = Next(_current);
        if (!float.IsFinite(loss))
        {
            if (_previous >= 0)
            {
                _current = _previous;
                _previous = -1;
                StepCount--;
            }

            return loss;
        }

        if (!float.IsFinite(TensorPrimitives.Sum(_parameters[next])))
        {
            return float.NaN;
        }

        _previous = _current;
        _current = next;
        StepCount++;
        return loss;
    }

    private StepRunner GetStep(int batch)
    {
        if (!_steps.TryGetValue(batch, out var step))
        {
            var graph = TrainingGraphBuilder.Build(_model, _options, batch);
            step = new StepRunner(this, graph);
            _steps[batch] = step;
        }

        return step;
    }

    private void ValidateBatch(ReadOnlySpan<float> features, ReadOnlySpan<long> labels)
    {
        var sample = _layout.SampleSize;
        if (labels.Length == 0)
        {
            throw new ArgumentException("The batch is empty.", nameof(labels));
        }

        if (features.Length != (long)labels.Length * sample)
        {
            throw new ArgumentException(
                $"Input shape mismatch: {labels.Length} labels need {labels.Length} × [{string.Join(", ", _layout.SampleShape)}] = " +
                $"{(long)labels.Length * sample} feature values for model input '{_layout.InputName}', but {features.Length} were given" +
                (features.Length % sample == 0 ? "." : $" (not a multiple of the sample size {sample})."), nameof(features));
        }

        var classes = _layout.ClassCount;
        if (classes > 0)
        {
            foreach (var y in labels)
            {
                if ((ulong)y >= (ulong)classes)
                {
                    throw new ArgumentException($"Label {y} is outside [0, {classes}) for a model with {classes} outputs.", nameof(labels));
                }
            }
        }
    }

    private void CheckLength(int length)
    {
        if (length != ParameterCount)
        {
            throw new ArgumentException($"The flat parameter vector has {ParameterCount} values; got {length}.");
        }
    }

    private static OrtValue Slice(float[] store, int offset, int length, long[] dims) =>
        OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(store, offset, length), dims);

    /// <summary>One step graph (per batch size) with its session and two prepared bindings.</summary>
    private sealed class StepRunner : IDisposable
    {
        private readonly OrtValue _features;
        private readonly OrtValue _labels;
        private readonly OrtValue _loss;
        private readonly List<OrtValue> _views = [];

        public StepRunner(OnnxTrainer trainer, TrainingGraph graph)
        {
            Graph = graph;
            if (graph.State.Any(slot => slot.Offset + slot.Length > trainer._state[0].Length))
            {
                throw new InvalidOperationException("Optimizer state layout mismatch between the graph and the trainer.");
            }

            Session = ValueShapes.CreateSession(graph.Model, trainer._sessionOptions);
            var batch = graph.BatchSize;
            Features = new float[batch * trainer._layout.SampleSize];
            Labels = new long[batch];
            Loss = new float[1];
            _features = OrtValue.CreateTensorValueFromMemory(Features, [batch, .. trainer._layout.SampleShape.Select(d => (long)d)]);
            _labels = OrtValue.CreateTensorValueFromMemory(Labels, [batch]);
            _loss = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(Loss), []);
            for (var side = 0; side < Sides; side++)
            {
                var binding = Session.CreateIoBinding();
                binding.BindInput(graph.FeaturesInput, _features);
                binding.BindInput(graph.LabelsInput, _labels);
                binding.BindOutput(graph.LossOutput, _loss);
                trainer.BindCommon(binding, graph, side, _views);
                Bindings[side] = binding;
            }
        }

        public TrainingGraph Graph { get; }

        public InferenceSession Session { get; }

        public RunOptions RunOptions { get; } = new();

        public OrtIoBinding[] Bindings { get; } = new OrtIoBinding[Sides];

        public float[] Features { get; }

        public long[] Labels { get; }

        public float[] Loss { get; }

        public void Dispose()
        {
            foreach (var b in Bindings)
            {
                b?.Dispose();
            }

            Session.Dispose();
            RunOptions.Dispose();
            _features.Dispose();
            _labels.Dispose();
            _loss.Dispose();
            _views.ForEach(v => v.Dispose());
        }
    }
}
