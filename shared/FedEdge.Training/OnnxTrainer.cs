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
    private readonly Dictionary<int, IStepRunner> _steps = [];
    private readonly long _activationsPerSample; // > 0: samples are independent and several CPU threads are asked for
    private SessionOptions? _shardSessionOptions;
    private readonly ZerothOrderEstimator? _zeroth;
    private EvaluationRunner? _evaluation;
    private readonly Dictionary<int, GradientRunner> _gradients = [];
    private float[]? _probe; // a parameter point other than the current one (gradient or loss probes)
    private OrtValue[]? _probeValues;
    private int _current;
    private int _previous = -1; // side holding the weights before the last step, while still intact
    private bool _disposed;

    private OnnxTrainer(ModelProto model, TrainingOptions options)
    {
        options.Validate();
        _model = model.Clone();
        OpsetForm.Apply(_model);
        InferenceForm.Apply(_model.Graph);
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
        if (options is { ZerothOrder: false } && options.BatchSplit != BatchSplitMode.Never && provider == ExecutionProviders.Cpu
            && (options.Threads is 0 or > 1) && TrainingGraphBuilder.SamplesAreIndependent(_model, options, out var activations))
        {
            _activationsPerSample = Math.Max(1, activations);
        }

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
        PrepareScalars();
        return Commit(step.Run(features, labels, _current));
    }

    /// <summary>Mean loss and accuracy of the current parameters on a labelled set (inference mode).</summary>
    public EvaluationResult Evaluate(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, int batchSize = 256)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateBatch(features, labels);
        var (lossSum, correct) = EvaluateSum(features, labels, _parameterValues[_current], batchSize);
        return labels.Length == 0 ? default : new EvaluationResult(lossSum / labels.Length, (double)correct / labels.Length, labels.Length);
    }

    /// <summary>
    /// Mean loss f(w) and gradient ∇f(w) over a whole labelled set at the current parameters, in chunks of
    /// <see cref="TrainingOptions.BatchSize"/>, without an optimizer step (the parameters do not change). FedMM's
    /// surrogate statistics and FAR-SIGN's first-order answers read it. Throws <see cref="NotSupportedException"/> for
    /// models with buffers (BatchNorm running statistics), whose flat gradient is not defined.
    /// </summary>
    public float ComputeGradient(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, Span<float> gradient)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return GradientAt(_parameterValues[_current], features, labels, gradient);
    }

    /// <summary>As <see cref="ComputeGradient(ReadOnlySpan{float}, ReadOnlySpan{long}, Span{float})"/> at another point <paramref name="parameters"/> (flat).</summary>
    public float ComputeGradient(ReadOnlySpan<float> parameters, ReadOnlySpan<float> features, ReadOnlySpan<long> labels, Span<float> gradient)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return GradientAt(Probe(parameters), features, labels, gradient);
    }

    /// <summary>Mean loss over a labelled set at <paramref name="parameters"/> (flat), inference mode; the trainer's own
    /// parameters do not change (FAR-SIGN's zeroth-order answers, objective values).</summary>
    public double EvaluateLoss(ReadOnlySpan<float> parameters, ReadOnlySpan<float> features, ReadOnlySpan<long> labels, int batchSize = 256)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateBatch(features, labels);
        return EvaluateSum(features, labels, Probe(parameters), batchSize).LossSum / labels.Length;
    }

    /// <summary>
    /// The proximal step of g(w) = λ‖w‖₁ on the trainable parameters (<see cref="FedEdge.Aggregation.Surrogates.SoftThreshold"/>): w ← sign(w)·max(|w| − <paramref name="threshold"/>, 0)
    /// with threshold = η·λ (local proximal SGD, e.g. FedAvg on an L1-regularised objective). Buffers are left alone.
    /// </summary>
    public void SoftThreshold(float threshold)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(threshold);
        var w = _parameters[_current];
        foreach (var t in _layout.Tensors)
        {
            if (t.Trainable)
            {
                FedEdge.Aggregation.Surrogates.SoftThreshold.Apply(w.AsSpan(t.Offset, t.Length), threshold);
            }
        }
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

    /// <summary>
    /// The generated single-graph training step for a batch size (for inspection and tests). When the trainer splits
    /// batches across threads (<see cref="TrainingOptions.BatchSplit"/>) it runs the same forward and
    /// gradient nodes on each shard and the same update nodes once, in separate graphs.
    /// </summary>
    public ModelProto GetTrainingGraph(int batchSize) => GetStep(batchSize) is StepRunner single
        ? single.Graph.Model
        : TrainingGraphBuilder.Build(_model, _options, batchSize).Model;

    /// <summary>
    /// Number of shards a batch of <paramref name="batchSize"/> is split into across threads (1: one graph on all threads);
    /// builds that batch size's step graphs if they do not exist yet.
    /// </summary>
    public int ShardsFor(int batchSize) => GetStep(batchSize) is ShardedStepRunner sharded ? sharded.ShardCount : 1;

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
        foreach (var g in _gradients.Values)
        {
            g.Dispose();
        }

        foreach (var v in _probeValues ?? [])
        {
            v.Dispose();
        }

        _zeroth?.Dispose();
        _shardSessionOptions?.Dispose();
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

    private float GradientAt(OrtValue[] parameters, ReadOnlySpan<float> features, ReadOnlySpan<long> labels, Span<float> gradient)
    {
        ValidateBatch(features, labels);
        CheckLength(gradient.Length);
        gradient.Clear();
        var total = labels.Length;
        var sample = _layout.SampleSize;
        double loss = 0;
        for (var start = 0; start < total; start += _options.BatchSize)
        {
            var n = Math.Min(_options.BatchSize, total - start);
            var runner = GradientRunnerFor(n);
            var chunk = runner.Run(features.Slice(start * sample, n * sample), labels.Slice(start, n), parameters, out var chunkLoss);
            // Each chunk's graph averages over its own n samples; weigh by n/total for the set's mean.
            TensorPrimitives.MultiplyAdd(chunk, (float)n / total, gradient, gradient);
            loss += chunkLoss * (double)n / total;
        }

        return (float)loss;
    }

    private GradientRunner GradientRunnerFor(int batch)
    {
        if (!_gradients.TryGetValue(batch, out var runner))
        {
            var graph = TrainingGraphBuilder.BuildGradient(_model, _options, batch, batch)
                ?? throw new NotSupportedException("The model's flat gradient is not defined (it has buffers such as BatchNorm running statistics, or a tensor gets no gradient).");
            runner = new GradientRunner(graph, _sessionOptions, ParameterCount);
            _gradients[batch] = runner;
        }

        return runner;
    }

    private OrtValue[] Probe(ReadOnlySpan<float> parameters)
    {
        CheckLength(parameters.Length);
        if (_probe is null)
        {
            _probe = new float[ParameterCount];
            _probeValues = [.. _layout.Tensors.Select(t => Slice(_probe, t.Offset, t.Length, t.Dims))];
        }

        parameters.CopyTo(_probe);
        return _probeValues!;
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
            if (graph.HasTensorInputs)
            {
                binding.BindInput(_layout.Tensors[i].Name, _parameterValues[side][i]);
            }

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

    /// <summary>
    /// Shards of a batch: one per thread (all cores for Threads = 0), each with at least <see cref="MinShardSamples"/>
    /// samples and <see cref="MinShardActivations"/> forward values; 1 when the batch is not split.
    /// </summary>
    private int ShardCount(int batch)
    {
        if (_activationsPerSample <= 0)
        {
            return 1;
        }

        var threads = _options.Threads > 0 ? _options.Threads : Environment.ProcessorCount;
        if (_options.BatchSplit == BatchSplitMode.Always)
        {
            return Math.Min(threads, batch);
        }

        var byWork = batch * _activationsPerSample / MinShardActivations;
        return (int)Math.Max(1, Math.Min(Math.Min(threads, batch / MinShardSamples), byWork));
    }

    /// <summary>Smallest shard worth a thread in <see cref="BatchSplitMode.Auto"/>: below it the per-graph overhead outweighs the split work.</summary>
    private const int MinShardSamples = 8;

    /// <summary>
    /// Smallest shard in <see cref="BatchSplitMode.Auto"/>, in forward values (elements of every value computed from the
    /// data), worth a thread of its own.
    /// Graphs of big GEMMs on small activations (the zoo mlp: ~1,000 values per sample) already split well inside ONNX
    /// Runtime's nodes, and a thread hand-off and a separate update graph cost more than they save; convolutional
    /// graphs (the zoo cnn: ~7,400 per sample) are dominated by many small nodes that do not.
    /// </summary>
    private const long MinShardActivations = 128 * 1024;

    private IStepRunner GetStep(int batch)
    {
        if (!_steps.TryGetValue(batch, out var step))
        {
            var shards = ShardCount(batch);
            step = (shards > 1 ? (IStepRunner?)ShardedStepRunner.TryCreate(this, batch, shards) : null)
                ?? new StepRunner(this, TrainingGraphBuilder.Build(_model, _options, batch));
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

    /// <summary>Runs one training step for one batch size, reading parameter side <c>side</c> and writing the next.</summary>
    private interface IStepRunner : IDisposable
    {
        /// <summary>Runs the step and returns the batch's mean loss.</summary>
        float Run(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, int side);
    }

    /// <summary>One step graph (per batch size) with its session and a prepared binding per parameter side.</summary>
    private sealed class StepRunner : IStepRunner
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

        public float Run(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, int side)
        {
            features.CopyTo(Features);
            labels.CopyTo(Labels);
            Session.RunWithBinding(RunOptions, Bindings[side]);
            return Loss[0];
        }

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

    /// <summary>
    /// Data-parallel step on one machine: the batch is split into shards of consecutive samples; each thread runs the
    /// forward and backward graph (<see cref="TrainingGraphBuilder.BuildGradient"/>) on its shard with one ONNX Runtime
    /// thread, writing its own flat gradient, and then one small graph (<see cref="TrainingGraphBuilder.BuildFlatUpdate"/>)
    /// sums the gradients and applies FedProx, clipping, weight decay and the optimizer. Each shard's loss is scaled by
    /// 1/batch, so the sums are the whole batch's mean loss and gradient: the same step as the single graph, up to
    /// float summation order. Only for models whose samples are independent
    /// (<see cref="TrainingGraphBuilder.SamplesAreIndependent"/>). Why: ONNX Runtime parallelises each node on its own,
    /// and on the zoo cnn (batch 64, 2 threads) most nodes are too small to gain from a second thread, so two
    /// threads ran a step barely faster than one; two half-batch graphs side by side take about half the time.
    /// </summary>
    private sealed class ShardedStepRunner : IStepRunner
    {
        private readonly InferenceSession[] _shardSessions;
        private readonly InferenceSession _updateSession;
        private readonly OrtIoBinding[,] _shardBindings; // [side, shard]
        private readonly OrtIoBinding[] _updateBindings = new OrtIoBinding[Sides];
        private readonly RunOptions[] _runOptions;
        private readonly RunOptions _updateRunOptions = new();
        private readonly float[] _features;
        private readonly long[] _labels;
        private readonly float[] _losses;
        private readonly List<OrtValue> _views = [];
        private readonly ShardThreads _threads;
        private int _side;

        private ShardedStepRunner(OnnxTrainer trainer, TrainingGraph[] shards, TrainingGraph update)
        {
            var count = shards.Length;
            var sample = trainer._layout.SampleSize;
            var batch = shards.Sum(g => g.BatchSize);
            _features = new float[batch * sample];
            _labels = new long[batch];
            _losses = new float[count];
            var gradients = new OrtValue[count];
            trainer._shardSessionOptions ??= ExecutionProviders.Create(trainer._options with { Threads = 1 }, out _);
            _shardSessions = new InferenceSession[count];
            _shardBindings = new OrtIoBinding[Sides, count];
            _runOptions = new RunOptions[count];
            _updateSession = ValueShapes.CreateSession(update.Model, trainer._shardSessionOptions);
            var start = 0;
            for (var k = 0; k < count; k++)
            {
                var g = shards[k];
                _shardSessions[k] = ValueShapes.CreateSession(g.Model, trainer._shardSessionOptions);
                _runOptions[k] = new RunOptions();
                var features = View(new Memory<float>(_features, start * sample, g.BatchSize * sample),
                    [g.BatchSize, .. trainer._layout.SampleShape.Select(d => (long)d)]);
                var labels = View(new Memory<long>(_labels, start, g.BatchSize), [g.BatchSize]);
                var loss = View(new Memory<float>(_losses, k, 1), []);
                gradients[k] = View(new Memory<float>(new float[trainer.ParameterCount]), [trainer.ParameterCount]);
                for (var side = 0; side < Sides; side++)
                {
                    var binding = _shardSessions[k].CreateIoBinding();
                    binding.BindInput(g.FeaturesInput, features);
                    binding.BindInput(g.LabelsInput, labels);
                    binding.BindOutput(g.LossOutput, loss);
                    binding.BindOutput(g.GradientOutput!, gradients[k]);
                    for (var i = 0; i < trainer._layout.Tensors.Count; i++)
                    {
                        binding.BindInput(trainer._layout.Tensors[i].Name, trainer._parameterValues[side][i]);
                    }

                    _shardBindings[side, k] = binding;
                }

                start += g.BatchSize;
            }

            for (var side = 0; side < Sides; side++)
            {
                var binding = _updateSession.CreateIoBinding();
                for (var k = 0; k < count; k++)
                {
                    binding.BindInput(update.FlatGradientInputs[k], gradients[k]);
                }

                trainer.BindCommon(binding, update, side, _views);
                _updateBindings[side] = binding;
            }

            _threads = new ShardThreads(count, RunShard, "FedEdge training shard");
        }

        /// <summary>Builds the shard and update graphs; null when the model's gradient cannot be split (then one graph runs).</summary>
        public int ShardCount => _shardSessions.Length;

        public static ShardedStepRunner? TryCreate(OnnxTrainer trainer, int batch, int count)
        {
            var shards = new TrainingGraph[count];
            for (var k = 0; k < count; k++)
            {
                // Consecutive samples, sizes differing by at most one. Each shard gets its own seed, so that shards do not
                // repeat one another's dropout masks.
                var size = batch / count + (k < batch % count ? 1 : 0);
                var graph = TrainingGraphBuilder.BuildGradient(trainer._model, trainer._options with { Seed = trainer._options.Seed + k }, size, batch);
                if (graph is null)
                {
                    return null;
                }

                shards[k] = graph;
            }

            return new ShardedStepRunner(trainer, shards, TrainingGraphBuilder.BuildFlatUpdate(trainer._model, trainer._options, count));
        }

        public float Run(ReadOnlySpan<float> features, ReadOnlySpan<long> labels, int side)
        {
            features.CopyTo(_features);
            labels.CopyTo(_labels);
            _side = side;
            _threads.Run();
            _updateSession.RunWithBinding(_updateRunOptions, _updateBindings[side]);
            var loss = 0f;
            foreach (var l in _losses)
            {
                loss += l;
            }

            return loss;
        }

        private void RunShard(int k) => _shardSessions[k].RunWithBinding(_runOptions[k], _shardBindings[_side, k]);

        private OrtValue View<T>(Memory<T> memory, long[] dims)
            where T : unmanaged
        {
            var value = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, memory, dims);
            _views.Add(value);
            return value;
        }

        public void Dispose()
        {
            _threads.Dispose();
            foreach (var b in _shardBindings)
            {
                b.Dispose();
            }

            foreach (var b in _updateBindings)
            {
                b.Dispose();
            }

            foreach (var s in _shardSessions)
            {
                s.Dispose();
            }

            foreach (var r in _runOptions)
            {
                r.Dispose();
            }

            _updateSession.Dispose();
            _updateRunOptions.Dispose();
            _views.ForEach(v => v.Dispose());
        }
    }
}
