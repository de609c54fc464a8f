using System.Buffers;
using System.Diagnostics;
using System.Numerics.Tensors;
using FedEdge.Aggregation.Strategies;
using FedEdge.Aggregation.Surrogates;
using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Data;
using FedEdge.Training;
using FedEdge.Training.Zoo;

namespace FedEdge.Cli.Commands;

/// <summary>What `fededge bench fedmm` runs: one federation, in process.</summary>
internal sealed record FedMMBenchSettings
{
    public string Model { get; init; } = "logreg";
    public int Rounds { get; init; } = 30;
    public int Devices { get; init; } = 20;
    public string Codec { get; init; } = "fp32";
    public string ErrorFeedback { get; init; } = "none";
    public double L1 { get; init; } = 1e-4;
    public double Participation { get; init; } = 1.0;
    public double Gamma { get; init; } = 1.0;
    public double? Alpha { get; init; }
    public string Surrogate { get; init; } = "logistic";
    public int TrainSamples { get; init; } = 12_000;
    public int LocalEpochs { get; init; } = 1;
    public int LocalSteps { get; init; } = 1;
    public float LearningRate { get; init; } = 0.05f;
    public int Batch { get; init; } = 32;
    public int Threads { get; init; } = 2;
    public int Atoms { get; init; } = 32;
    public int PatchesPerDevice { get; init; } = 300;
    public double Penalty { get; init; } = 0.1;
    public int Coding { get; init; } = 50;
    public string? DataDirectory { get; init; }
    public bool ZeroInit { get; init; } = true;
}

/// <summary>One round of one run, as printed and written to the JSON records.</summary>
internal sealed record FedMMRoundRecord(
    string Model, string Method, string Partition, int Seed, int Round, double Objective, double Loss, double Regularizer,
    double? TestAccuracy, long BytesUp, long BytesDown, long CumulativeBytes, double Sparsity, int Active, double Seconds);

/// <summary>
/// The in-process comparison of FedMM (surrogate aggregation) with parameter aggregation, on the real strategy seam
/// (<see cref="FedMMStrategy"/>, <see cref="SyncRoundStrategy"/> with the mean), the real codecs and the ONNX trainer:
/// <list type="bullet">
/// <item>fedmm: devices send Q(S_i − Ŝ − V_i), the server maps θ = T(Ŝ).</item>
/// <item>param-mm: the paper's naive parameter aggregation: each device takes the same MM step locally,
/// θ_i = T(S_i(θ)), and sends Q(θ_i − θ); the server averages (same computation, other aggregation space).</item>
/// <item>fedavg (logreg): local proximal SGD on f_i + g (TrainStep, then SoftThreshold(η·λ) each step), E epochs;
/// sends Q(θ_i − θ); the server averages.</item>
/// </list>
/// Parameter methods go through the codec with error feedback as configured; FedMM's control variates are its own.
/// </summary>
internal sealed class FedMMBenchmark : IDisposable
{
    private readonly FedMMBenchSettings _settings;
    private readonly IUpdateCodec _codec;
    private readonly Dataset _train;
    private readonly Dataset _test;
    private readonly float _inputMean;
    private readonly float _inputStd;
    private readonly OnnxTrainer? _evaluator;
    private readonly OnnxTrainer? _learner;
    private readonly float[] _allFeatures;
    private readonly long[] _allLabels;
    private readonly double _smoothness;

    public FedMMBenchmark(FedMMBenchSettings settings)
    {
        _settings = settings;
        _codec = UpdateCodecs.Parse(settings.Codec);
        var train = FashionMnist.LoadTrain(settings.DataDirectory);
        var order = Enumerable.Range(0, train.Count).ToArray();
        // A fixed subset (not per seed), so every seed solves the same problem and only the partition varies.
        new Random(12345).Shuffle(order);
        _train = train.Subset(order.AsSpan(0, Math.Min(settings.TrainSamples, train.Count)));
        _test = FashionMnist.LoadTest(settings.DataDirectory);
        _allFeatures = _train.Features;
        _allLabels = _train.Labels;
        _inputMean = (float)_allFeatures.Average(v => (double)v);
        _inputStd = (float)Math.Sqrt(_allFeatures.Average(v => ((double)v - _inputMean) * ((double)v - _inputMean)));
        if (settings.Model == "logreg")
        {
            var model = ModelZoo.Create("logreg", [1, 28, 28], 10, seed: 0, inputMean: _inputMean, inputStd: _inputStd);
            _evaluator = OnnxTrainer.Create(model, new TrainingOptions { BatchSize = 1000, Threads = settings.Threads });
            _learner = OnnxTrainer.Create(model, new TrainingOptions
            {
                BatchSize = settings.Batch,
                Threads = settings.Threads,
                LearningRate = settings.LearningRate,
                Optimizer = OptimizerKind.Sgd,
            });
            _smoothness = QuadraticSurrogate.SoftmaxSmoothnessBound(_allFeatures, 784, _inputMean, _inputStd);
        }
    }

    public string Describe() => _settings.Model == "logreg"
        ? $"Fashion-MNIST logreg, {_train.Count} training samples (fixed subset), input standardisation mean {_inputMean:F4} std {_inputStd:F4}, " +
          $"d = {_evaluator!.ParameterCount}, quadratic L = {_smoothness:F2} (½λ_max(E[x̃x̃ᵀ]))"
        : $"Fashion-MNIST 8×8 patches, {_settings.PatchesPerDevice} per device, k = {_settings.Atoms} atoms, λ_dl = {_settings.Penalty}";

    public void Dispose()
    {
        _evaluator?.Dispose();
        _learner?.Dispose();
    }

    /// <summary>Runs <paramref name="method"/> on <paramref name="partition"/> with <paramref name="seed"/>, calling
    /// <paramref name="report"/> after every round.</summary>
    public void Run(string method, string partition, int seed, Action<FedMMRoundRecord> report, CancellationToken cancellationToken)
    {
        var parts = Partition.Apply(partition, _train.Labels, _settings.Devices, seed);
        _cumulative = 0;
        if (_settings.Model == "logreg")
        {
            RunLogreg(method, partition, parts, seed, report, cancellationToken);
        }
        else
        {
            RunDictionary(method, partition, parts, seed, report, cancellationToken);
        }
    }

    private sealed record Device(string Id, float[] Features, long[] Labels, IDeviceObjective Objective);

    private Device[] Devices(int[][] parts, Func<int, float[], long[], IDeviceObjective> objective) =>
        parts.Select((indices, i) =>
        {
            var x = new float[indices.Length * _train.SampleSize];
            var y = new long[indices.Length];
            _train.CopyBatch(indices, x, y);
            return new Device($"dev-{i:D2}", x, y, objective(i, x, y));
        }).ToArray();

    private void RunLogreg(string method, string partition, int[][] parts, int seed, Action<FedMMRoundRecord> report, CancellationToken cancellationToken)
    {
        var evaluator = _evaluator!;
        var devices = Devices(parts, (_, x, y) => new OnnxDeviceObjective(evaluator, x, y));
        var fleet = devices.Select(d => new DeviceDescriptor(d.Id, d.Labels.Length)).ToArray();
        var theta = new float[evaluator.ParameterCount];
        if (!_settings.ZeroInit)
        {
            // The zoo's PyTorch-style initialisation drawn from the seed (the same θ₀ for every method of a seed).
            using var init = OnnxTrainer.Create(ModelZoo.Create("logreg", [1, 28, 28], 10, seed, _inputMean, _inputStd), new TrainingOptions());
            init.CopyParametersTo(theta);
        }

        ISurrogate surrogate = _settings.Surrogate == "quadratic"
            ? new QuadraticSurrogate(theta.Length, _smoothness, _settings.L1)
            : new LogisticCurvatureSurrogate(784, 10, _settings.L1, _inputMean, _inputStd);
        Report(0, 0, 0, 0, 0);

        void Report(int round, long up, long down, int active, double seconds)
        {
            double loss = evaluator.EvaluateLoss(theta, _allFeatures, _allLabels, 1000);
            double regularizer = _settings.L1 * TensorPrimitives.SumOfMagnitudes(theta);
            evaluator.SetParameters(theta);
            double accuracy = evaluator.Evaluate(_test.Features, _test.Labels, 1000).Accuracy;
            _cumulative += up + down;
            report(new FedMMRoundRecord(_settings.Model, method, partition, seed, round, loss + regularizer, loss, regularizer, accuracy,
                up, down, _cumulative, theta.Count(v => v == 0) / (double)theta.Length, active, seconds));
        }

        if (method == "fedmm")
        {
            RunFedMM(surrogate, devices, fleet, theta, seed, (round, up, down, active, seconds) => Report(round, up, down, active, seconds), cancellationToken);
            return;
        }

        RunParameterAggregation(method, devices, fleet, theta, seed, (device, start, local) =>
        {
            if (method == "param-mm")
            {
                LocalMM(surrogate, device.Objective, start, local, _settings.LocalSteps);
                return;
            }

            LocalProximalSgd(device, start, local, seed);
        }, (round, up, down, active, seconds) => Report(round, up, down, active, seconds), cancellationToken);
    }

    private long _cumulative;

    private delegate void RoundReport(int round, long up, long down, int active, double seconds);

    private void RunFedMM(ISurrogate surrogate, Device[] devices, DeviceDescriptor[] fleet, float[] theta, int seed, RoundReport report, CancellationToken cancellationToken)
    {
        var options = new FedMMOptions
        {
            Surrogate = surrogate switch
            {
                QuadraticSurrogate => SurrogateKind.Quadratic,
                LogisticCurvatureSurrogate => SurrogateKind.Logistic,
                _ => SurrogateKind.Dictionary,
            },
            Smoothness = surrogate is QuadraticSurrogate q ? q.Smoothness : null,
            L1 = surrogate is DictionarySurrogate ? 0 : _settings.L1,
            Alpha = _settings.Alpha,
            Gamma = _settings.Gamma,
            Participation = _settings.Participation,
        };
        double alpha = options.ResolveAlpha(_codec, surrogate.StatisticLength);
        var strategy = new FedMMStrategy(options, surrogate, alpha, new SyncRoundOptions { Seed = seed });
        var variates = devices.ToDictionary(d => d.Id, _ => new FedMMControlVariate(surrogate.StatisticLength, alpha));
        var byId = devices.ToDictionary(d => d.Id);
        int m = surrogate.StatisticLength;
        var statistic = new float[m];
        var delta = new float[m];
        var decoded = new float[m];
        var writer = new ArrayBufferWriter<byte>(_codec.MaxEncodedSize(m));
        for (int round = 1; round <= _settings.Rounds; round++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var watch = Stopwatch.StartNew();
            var plan = strategy.Plan(new VersionContext(round - 1, DateTimeOffset.UnixEpoch, fleet.Length), fleet)!;
            bool bootstrap = !strategy.IsBootstrapped;
            var estimate = strategy.StatisticEstimate.ToArray();
            // Down: θ (as the ONNX model's weights) and, after the bootstrap, Ŝ (ModelBundle), to every asked device.
            long down = (long)plan.Participants!.Count * 4L * (theta.Length + estimate.Length);
            long up = 0;
            var version = strategy.Begin(plan);
            foreach (var id in plan.Participants)
            {
                var device = byId[id];
                surrogate.Statistic(theta, device.Objective, statistic);
                variates[id].Difference(statistic, estimate, delta);
                writer.ResetWrittenCount();
                // The bootstrap answer is S_i itself, which no control variate corrects later: it travels exactly.
                var codec = bootstrap ? Fp32Codec.Instance : _codec;
                up += codec.Encode(delta, writer);
                var check = codec.Decode(writer.WrittenSpan, decoded);
                if (!check.IsValid)
                {
                    throw new InvalidOperationException($"{codec.Spec} could not decode its own payload: {check}");
                }

                if (!bootstrap)
                {
                    variates[id].Apply(decoded);
                }

                if (version.Offer(DeviceContribution.Update(id, decoded, device.Objective.SampleCount, round - 1)) is { } refusal)
                {
                    throw new InvalidOperationException($"FedMM refused {id}: {refusal.Reason}");
                }
            }

            version.Complete(theta);
            report(round, up, down, plan.Participants.Count, watch.Elapsed.TotalSeconds);
        }
    }

    private void RunParameterAggregation(string method, Device[] devices, DeviceDescriptor[] fleet, float[] theta, int seed,
        Action<Device, float[], float[]> train, RoundReport report, CancellationToken cancellationToken)
    {
        var server = new ServerAggregator(new ServerAggregatorOptions { Rule = "mean" }, theta.Length);
        var strategy = new SyncRoundStrategy(new SyncRoundOptions { SampleFraction = _settings.Participation, Seed = seed }, server);
        var feedback = ErrorFeedbackCompressor.ParseKind(_settings.ErrorFeedback);
        var compressors = devices.ToDictionary(d => d.Id, _ => ErrorFeedbackCompressor.Create(feedback, _codec, theta.Length));
        var byId = devices.ToDictionary(d => d.Id);
        var local = new float[theta.Length];
        var update = new float[theta.Length];
        var writer = new ArrayBufferWriter<byte>(_codec.MaxEncodedSize(theta.Length));
        for (int round = 1; round <= _settings.Rounds; round++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var watch = Stopwatch.StartNew();
            var plan = strategy.Plan(new VersionContext(round - 1, DateTimeOffset.UnixEpoch, fleet.Length) { Model = theta }, fleet)!;
            long down = (long)plan.Participants!.Count * 4L * theta.Length;
            long up = 0;
            var version = strategy.Begin(plan);
            foreach (var id in plan.Participants)
            {
                var device = byId[id];
                train(device, theta, local);
                TensorPrimitives.Subtract(local, theta, update);
                writer.ResetWrittenCount();
                up += compressors[id].Compress(update, writer);
                var sent = compressors[id].LastSent.ToArray();
                if (version.Offer(DeviceContribution.Update(id, sent, device.Labels.Length > 0 ? device.Labels.Length : device.Objective.SampleCount, round - 1)) is { } refusal)
                {
                    throw new InvalidOperationException($"{method} refused {id}: {refusal.Reason}");
                }
            }

            version.Complete(theta);
            report(round, up, down, plan.Participants.Count, watch.Elapsed.TotalSeconds);
        }
    }

    /// <summary>The paper's parameter aggregation: <paramref name="steps"/> MM steps on the device's own surrogate.</summary>
    private static void LocalMM(ISurrogate surrogate, IDeviceObjective objective, float[] start, float[] result, int steps)
    {
        var statistic = new float[surrogate.StatisticLength];
        start.CopyTo(result, 0);
        for (int s = 0; s < steps; s++)
        {
            surrogate.Statistic(result, objective, statistic);
            surrogate.Map(statistic, result);
        }
    }

    /// <summary>FedAvg's local proximal SGD on f_i + λ‖θ‖₁: E epochs of shuffled batches, TrainStep then the L1 prox.</summary>
    private void LocalProximalSgd(Device device, float[] start, float[] result, int seed)
    {
        var learner = _learner!;
        learner.SetParameters(start);
        learner.ResetOptimizerState();
        int n = device.Labels.Length, batch = Math.Min(_settings.Batch, n), sample = _train.SampleSize;
        var order = Enumerable.Range(0, n).ToArray();
        var random = new Random(HashCode.Combine(seed, device.Id, start.Length));
        var x = new float[batch * sample];
        var y = new long[batch];
        float threshold = (float)(_settings.LearningRate * _settings.L1);
        for (int epoch = 0; epoch < _settings.LocalEpochs; epoch++)
        {
            random.Shuffle(order);
            for (int b = 0; b + batch <= n; b += batch)
            {
                for (int i = 0; i < batch; i++)
                {
                    device.Features.AsSpan(order[b + i] * sample, sample).CopyTo(x.AsSpan(i * sample, sample));
                    y[i] = device.Labels[order[b + i]];
                }

                learner.TrainStep(x, y);
                learner.SoftThreshold(threshold);
            }
        }

        learner.CopyParametersTo(result);
    }

    private void RunDictionary(string method, string partition, int[][] parts, int seed, Action<FedMMRoundRecord> report, CancellationToken cancellationToken)
    {
        const int side = 8;
        var surrogate = new DictionarySurrogate(side * side, _settings.Atoms, _settings.Penalty, _settings.Coding);
        var devices = parts.Select((indices, i) =>
        {
            var patches = ImagePatches.Extract(_train, indices, side, _settings.PatchesPerDevice, HashCode.Combine(seed, i));
            return new Device($"dev-{i:D2}", patches, new long[0], new PatchObjective(patches, side * side));
        }).Where(d => d.Objective.SampleCount > 0).ToArray();
        var union = devices.SelectMany(d => d.Features).ToArray();
        var fleet = devices.Select(d => new DeviceDescriptor(d.Id, d.Objective.SampleCount)).ToArray();
        // D₀: unit-norm Gaussian atoms from the seed (no device's data).
        var random = new Random(seed);
        var theta = new float[surrogate.ParameterCount];
        for (int j = 0; j < surrogate.Atoms; j++)
        {
            var atom = theta.AsSpan(j * side * side, side * side);
            for (int t = 0; t < atom.Length; t++)
            {
                atom[t] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
            }

            TensorPrimitives.Divide(atom, TensorPrimitives.Norm(atom), atom);
        }

        void Report(int round, long up, long down, int active, double seconds)
        {
            double objective = surrogate.Objective(theta, union);
            _cumulative += up + down;
            report(new FedMMRoundRecord(_settings.Model, method, partition, seed, round, objective, objective, 0, null,
                up, down, _cumulative, theta.Count(v => v == 0) / (double)theta.Length, active, seconds));
        }

        Report(0, 0, 0, 0, 0);
        if (method == "fedmm")
        {
            RunFedMM(surrogate, devices, fleet, theta, seed, Report, cancellationToken);
            return;
        }

        RunParameterAggregation(method, devices, fleet, theta, seed,
            (device, start, local) => LocalMM(surrogate, device.Objective, start, local, _settings.LocalSteps), Report, cancellationToken);
    }
}
