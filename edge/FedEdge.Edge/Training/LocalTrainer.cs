using System.Diagnostics;
using System.Numerics.Tensors;
using FedEdge.Data;
using FedEdge.Edge.Models;
using FedEdge.Onnx;
using FedEdge.Protocol;
using FedEdge.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge.Training;

/// <summary>What one round of local training produced.</summary>
/// <param name="Delta">Δ = local − global, in the trainer's flat parameter layout; for the other
/// <see cref="RoundContribution"/>s the vector the device sends (FedMM's Δ_i = S_i − Ŝ − V_i, FAR-SIGN's ±1 answers).</param>
public sealed record LocalRoundResult(long BaseVersion, float[] Delta, int SampleCount, double Loss, double Accuracy, long Steps, TimeSpan Duration)
{
    public RoundContribution Kind { get; init; } = RoundContribution.Update;

    /// <summary>FedMM: the first answer, before any Ŝ is published (the control variate is not moved by it).</summary>
    public bool Bootstrap { get; init; }
}

/// <summary>What a device sends for a model version, by the federation's announced algorithm.</summary>
public enum RoundContribution
{
    /// <summary>FedAvg: a trained update Δ (with error feedback).</summary>
    Update,

    /// <summary>FedMM: Δ_i = S_i − Ŝ − V_i (the control variate replaces error feedback).</summary>
    Statistics,

    /// <summary>FAR-SIGN: one ±1 answer per direction.</summary>
    Answers,
}

/// <summary>
/// Runs FedAvg's local step on one device: load the global weights, E epochs of shuffled mini-batch training
/// (McMahan et al. 2017, Algorithm 1, ClientUpdate), then Δ = w_local − w_global. The ONNX Runtime session is
/// kept across rounds when a new version only changes weights (same parameter layout), so a round costs no
/// graph rebuild. Not thread-safe: one per agent.
/// </summary>
public sealed partial class LocalTrainer : IDisposable
{
    private readonly EdgeTrainingOptions _options;
    private readonly Dataset _train;
    private readonly Dataset? _test;
    private readonly int _maxEvaluationSamples;
    private readonly ILogger _logger;
    private OnnxTrainer? _trainer;
    private ModelLayout? _layout;
    private byte[] _graphFingerprint = [];
    private OnnxDeviceObjective? _objective;
    private Dataset? _objectiveData;
    private float[] _global = [];
    private float[] _local = [];
    private int _batch;

    public LocalTrainer(EdgeTrainingOptions options, Dataset train, Dataset? test = null, int maxEvaluationSamples = 1000, ILogger<LocalTrainer>? logger = null)
    {
        CheckTrainingData(train);
        _options = options;
        _train = train;
        _test = test;
        _maxEvaluationSamples = maxEvaluationSamples;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Number of parameters d of the loaded model (0 before the first round).</summary>
    public int ParameterCount => _layout?.ParameterCount ?? 0;

    /// <summary>Times a training session was (re)built; stays 1 while versions only change weights.</summary>
    public int SessionBuilds { get; private set; }

    /// <summary>Trains one round on <paramref name="model"/> with the data given at construction; cancellation is checked between steps.</summary>
    public LocalRoundResult Train(VerifiedModel model, CancellationToken cancellationToken) => Train(model, _train, _test, cancellationToken);

    /// <summary>
    /// Trains one round on <paramref name="model"/> with <paramref name="train"/> (a data window, or the samples of one
    /// cluster) and reports the accuracy on <paramref name="test"/> (else on <paramref name="train"/>). The session is
    /// rebuilt only when the graph, the parameter layout or the batch size (smaller than configured for a data set
    /// smaller than one batch) changes.
    /// </summary>
    public LocalRoundResult Train(VerifiedModel model, Dataset train, Dataset? test, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        var trainer = Prepare(model, train);
        trainer.ResetOptimizerState();
        trainer.LearningRate = _options.LearningRate;
        if (_options.ProximalMu > 0)
            trainer.SetProximalAnchor(_global);

        // "fedavg:l1=λ": local proximal SGD on g = λ‖θ‖₁, the same g that FedMM's map handles (algorithms.md §5).
        var algorithm = model.Algorithm;
        var l1 = algorithm.Name == AlgorithmSpec.FedAvg ? (float)algorithm.Number("l1", 0) : 0f;
        var (loss, steps) = RunEpochs(trainer, train, model.Version, l1, cancellationToken);
        trainer.CopyParametersTo(_local);
        var delta = new float[_local.Length];
        TensorPrimitives.Subtract(_local, _global, delta);
        var accuracy = Evaluate(trainer, test ?? train);
        return new LocalRoundResult(model.Version, delta, train.Count, loss, accuracy, steps, stopwatch.Elapsed);
    }

    /// <summary>
    /// The device's objective f_i at <paramref name="model"/>'s parameters over <paramref name="train"/>, for the
    /// algorithms that ask for statistics or signed directional derivatives instead of a trained update (FedMM,
    /// FAR-SIGN). Valid until the next call on this trainer.
    /// </summary>
    public OnnxDeviceObjective Objective(VerifiedModel model, Dataset train)
    {
        var trainer = Prepare(model, train);
        if (!ReferenceEquals(_objectiveData, train) || !ReferenceEquals(_objective?.Trainer, trainer))
        {
            var features = new float[train.Count * train.SampleSize];
            var labels = new long[train.Count];
            train.CopyRange(0, train.Count, features, labels);
            (_objective, _objectiveData) = (new OnnxDeviceObjective(trainer, features, labels), train);
        }
        return _objective;
    }

    /// <summary>The global parameters of the model last prepared (<see cref="Train(VerifiedModel, Dataset, Dataset?, CancellationToken)"/> or <see cref="Objective"/>).</summary>
    public ReadOnlySpan<float> GlobalParameters => _global;

    /// <summary>Test accuracy of <paramref name="parameters"/> on the device's evaluation data (else its training data).</summary>
    public double Accuracy(ReadOnlySpan<float> parameters, Dataset data)
    {
        _trainer!.SetParameters(parameters);
        return Evaluate(_trainer, data);
    }

    /// <summary>
    /// The trainer for <paramref name="model"/> with its global weights loaded. The session is rebuilt only when the
    /// graph, the parameter layout or the batch size (smaller than configured for a data set smaller than one batch)
    /// changes.
    /// </summary>
    private OnnxTrainer Prepare(VerifiedModel model, Dataset train)
    {
        CheckTrainingData(train);
        var proto = OnnxModelFile.Parse(model.OnnxBytes.Span, $"model v{model.Version}");
        var layout = ModelLayout.Analyze(proto);
        var fingerprint = ModelGraph.Fingerprint(proto);
        var batch = Math.Min(_options.BatchSize, train.Count);
        if (_trainer is null || !SameParameters(_layout!, layout) || !fingerprint.AsSpan().SequenceEqual(_graphFingerprint) || batch != _batch)
        {
            _graphFingerprint = fingerprint;
            _trainer?.Dispose();
            _trainer = OnnxTrainer.Create(proto, TrainingOptionsFor(model.Version, batch));
            _batch = batch;
            _layout = layout;
            _global = new float[layout.ParameterCount];
            _local = new float[layout.ParameterCount];
            SessionBuilds++;
            LogSessionBuilt(model.Version, layout.ParameterCount, _trainer.ExecutionProvider);
        }
        EnsureDataFits(_trainer, train);
        layout.ReadParameters(proto, _global);
        _trainer.SetParameters(_global);
        return _trainer;
    }

    public void Dispose() => _trainer?.Dispose();

    private (double Loss, long Steps) RunEpochs(OnnxTrainer trainer, Dataset train, long version, float l1, CancellationToken cancellationToken)
    {
        var batch = _batch;
        var x = new float[batch * train.SampleSize];
        var y = new long[batch];
        var order = Enumerable.Range(0, train.Count).ToArray();
        // A different shuffle per round and device seed, reproducible for a given (seed, version).
        var random = new Random(HashCode.Combine(_options.Seed, version));
        double lossSum = 0;
        long steps = 0;
        var maxSteps = _options.MaxStepsPerRound > 0 ? _options.MaxStepsPerRound : long.MaxValue;
        for (var epoch = 0; epoch < _options.LocalEpochs && steps < maxSteps; epoch++)
        {
            random.Shuffle(order);
            // Full batches only: a last partial batch would build a second step graph for a handful of samples.
            for (var start = 0; start + batch <= order.Length && steps < maxSteps; start += batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                train.CopyBatch(order.AsSpan(start, batch), x, y);
                var loss = trainer.TrainStep(x, y);
                if (!float.IsFinite(loss))
                {
                    LogNonFiniteLoss(version, steps);
                    return (double.NaN, steps);
                }
                if (l1 > 0)
                    trainer.SoftThreshold(trainer.LearningRate * l1);
                lossSum += loss;
                steps++;
            }
        }
        return (steps == 0 ? double.NaN : lossSum / steps, steps);
    }

    private double Evaluate(OnnxTrainer trainer, Dataset data)
    {
        var count = Math.Min(_maxEvaluationSamples, data.Count);
        if (count <= 0)
            return double.NaN;
        var x = new float[count * data.SampleSize];
        var y = new long[count];
        data.CopyRange(0, count, x, y);
        return trainer.Evaluate(x, y).Accuracy;
    }

    private TrainingOptions TrainingOptionsFor(long version, int batch) => new()
    {
        BatchSize = batch,
        LearningRate = _options.LearningRate,
        Optimizer = _options.Optimizer,
        Momentum = _options.Momentum,
        WeightDecay = _options.WeightDecay,
        ClipNorm = _options.ClipNorm,
        ProximalMu = _options.ProximalMu,
        Threads = _options.Threads,
        Device = _options.Device,
        Seed = HashCode.Combine(_options.Seed, version),
    };

    private static void EnsureDataFits(OnnxTrainer trainer, Dataset train)
    {
        var modelSample = trainer.SampleShape.Aggregate(1, (a, b) => a * b);
        if (modelSample != train.SampleSize)
        {
            throw new InvalidOperationException(
                $"The model takes samples of shape [{string.Join(", ", trainer.SampleShape)}] ({modelSample} values) but the local data has shape [{string.Join(", ", train.SampleShape)}] ({train.SampleSize} values).");
        }
    }

    private static void CheckTrainingData(Dataset train)
    {
        ArgumentNullException.ThrowIfNull(train);
        if (train.Count == 0)
            throw new ArgumentException("The device has no training samples.", nameof(train));
        if (!train.HasLabels)
            throw new ArgumentException("The device's data set has regression targets; the agent trains classifiers (labels).", nameof(train));
    }

    private static bool SameParameters(ModelLayout a, ModelLayout b) =>
        a.ParameterCount == b.ParameterCount
        && a.Tensors.Count == b.Tensors.Count
        && a.Tensors.Zip(b.Tensors).All(p => p.First.Name == p.Second.Name && p.First.Dims.AsSpan().SequenceEqual(p.Second.Dims));

    [LoggerMessage(EventId = 400, Level = LogLevel.Information, Message = "Training session built for model v{Version}: {Parameters} parameters on {Provider}")]
    private partial void LogSessionBuilt(long version, int parameters, string provider);

    [LoggerMessage(EventId = 401, Level = LogLevel.Warning, Message = "Local training on v{Version} diverged (non-finite loss) after {Steps} steps; keeping the last good weights")]
    private partial void LogNonFiniteLoss(long version, long steps);
}
