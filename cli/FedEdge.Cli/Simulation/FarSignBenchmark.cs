using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using FedEdge.Aggregation;
using FedEdge.Aggregation.Attacks;
using FedEdge.Aggregation.SignedDirections;
using FedEdge.Aggregation.Strategies;
using FedEdge.Cli.Commands;
using FedEdge.Data;
using FedEdge.Training;
using FedEdge.Training.Zoo;

namespace FedEdge.Cli.Simulation;

/// <summary>
/// The cost model of the in-process FAR-SIGN benchmark: device compute in floating-point operations at a reference
/// rate (times the device's lognormal slowdown) and links in bits per second plus a latency, so results are in
/// SIMULATED seconds and do not depend on the load of the machine that runs them.
/// </summary>
public sealed record DeviceCostModel
{
    /// <summary>Floating-point operations per second of a device with slowdown 1 (about one Raspberry Pi 4 core).</summary>
    public double Flops { get; init; } = 1e9;

    public double UplinkBitsPerSecond { get; init; } = 2e6;

    public double DownlinkBitsPerSecond { get; init; } = 20e6;

    /// <summary>One-way latency of a message, each direction.</summary>
    public double LatencySeconds { get; init; } = 0.02;

    /// <summary>Bytes a message carries besides its payload (topic, envelope, signature).</summary>
    public int OverheadBytes { get; init; } = 128;

    /// <summary>A forward and backward pass of a dense net: about 6 operations per parameter and sample.</summary>
    public static double GradientFlops(int parameters, int batch) => 6.0 * parameters * batch;

    /// <summary>A forward pass: about 2 operations per parameter and sample.</summary>
    public static double ForwardFlops(int parameters, int batch) => 2.0 * parameters * batch;

    public double Upload(long payload) => LatencySeconds + (payload + OverheadBytes) * 8.0 / UplinkBitsPerSecond;

    public double Download(long payload) => LatencySeconds + (payload + OverheadBytes) * 8.0 / DownlinkBitsPerSecond;
}

/// <summary>What one benchmark run does.</summary>
public sealed record FarSignBenchmarkOptions
{
    /// <summary>far-sign or fedbuff.</summary>
    public string Method { get; init; } = "far-sign";

    public string Model { get; init; } = "logreg";

    /// <summary>none, sign-flip, random or colluding.</summary>
    public string Attack { get; init; } = "none";

    public double AttackerFraction { get; init; } = 0.2;

    public int Devices { get; init; } = 20;

    /// <summary>Simulated seconds the run lasts.</summary>
    public double Budget { get; init; } = 30;

    /// <summary>Evaluations of the global model on the test set, evenly over the budget.</summary>
    public int Checkpoints { get; init; } = 30;

    public int EvaluationSamples { get; init; } = 10_000;

    public string Partition { get; init; } = "iid";

    /// <summary>σ of the lognormal slowdown exp(σ·z) of each device's compute.</summary>
    public double SpeedSigma { get; init; } = 1.0;

    public int Seed { get; init; } = 1;

    public string? DataDirectory { get; init; }

    public FarSignOptions FarSign { get; init; } = new();

    /// <summary>FedBuff: updates per version (K).</summary>
    public int BufferSize { get; init; } = 10;

    /// <summary>FedBuff: local SGD steps per update.</summary>
    public int LocalSteps { get; init; } = 10;

    /// <summary>FedBuff: local SGD learning rate.</summary>
    public double LearningRate { get; init; } = 0.05;

    /// <summary>FedBuff: minibatch size of local steps.</summary>
    public int Batch { get; init; } = 64;

    /// <summary>FedBuff: the robust rule over the buffer.</summary>
    public string Rule { get; init; } = "trimmed-mean";

    public DeviceCostModel Cost { get; init; } = new();

    public static IReadOnlyList<string> Methods { get; } = ["far-sign", "fedbuff"];

    public static IReadOnlyList<string> Attacks { get; } = ["none", "sign-flip", "random", "colluding"];

    public int AttackerCount => Attack == "none" ? 0 : SimulatedDevices.Share(AttackerFraction, Devices);

    public void Validate()
    {
        if (!Methods.Contains(Method))
        {
            throw new ArgumentException($"Unknown method '{Method}'; expected {string.Join(" or ", Methods)}.");
        }

        if (!Attacks.Contains(Attack))
        {
            throw new ArgumentException($"Unknown attack '{Attack}'; expected one of {string.Join(", ", Attacks)}.");
        }

        if (Model is not ("logreg" or "mlp"))
        {
            throw new ArgumentException($"--model is logreg or mlp (got '{Model}').");
        }

        if (Devices < 2 || !(Budget > 0) || Checkpoints < 1 || BufferSize < 1 || LocalSteps < 1 || Batch < 1 || !(LearningRate > 0))
        {
            throw new ArgumentException("devices ≥ 2 and a positive budget, checkpoints, buffer, local steps, batch and learning rate are needed.");
        }

        if (FarSign.Validate() is { } problem)
        {
            throw new ArgumentException($"far-sign: {problem}");
        }
    }
}

/// <summary>The global model's test accuracy at a simulated time.</summary>
public sealed record BenchmarkPoint(double Time, long Version, long Messages, long BytesUp, double Accuracy, double Loss);

/// <summary>One run's outcome.</summary>
public sealed record BenchmarkRun(
    string Method,
    string Model,
    string Attack,
    int Attackers,
    string Strategy,
    int Parameters,
    IReadOnlyList<BenchmarkPoint> Points,
    long Messages,
    long Versions,
    long BytesUp,
    long BytesDown,
    int Refused,
    double WallSeconds)
{
    public double FinalAccuracy => Points[^1].Accuracy;

    public double BestAccuracy => Points.Max(p => p.Accuracy);

    /// <summary>Simulated seconds to the first checkpoint at or above <paramref name="accuracy"/>, or null.</summary>
    public double? TimeTo(double accuracy) => Points.FirstOrDefault(p => p.Accuracy >= accuracy)?.Time;
}

/// <summary>
/// FAR-SIGN against robust FedBuff on the same simulated fleet (issue 14): n devices on Fashion-MNIST with lognormal
/// compute speeds, a share of attackers, an event queue in simulated time. Every device loops: download the newest
/// model, compute (FAR-SIGN: answers to K directions; FedBuff: Q local SGD steps), upload; the server applies each
/// arrival in time order. The two methods see the same devices, data, speeds, attackers and cost model; only the
/// message differs. Attacks: FAR-SIGN attackers flip their bits, send random bits, or collude
/// (−sign⟨ḡ_honest, u_k⟩); FedBuff attackers send −Δ, Gaussian N(0, 200·I), or ALIE from the latest honest updates.
/// </summary>
public sealed class FarSignBenchmark : IDisposable
{
    private readonly FarSignBenchmarkOptions _options;
    private readonly Dataset _train;
    private readonly Dataset _test;
    private readonly int[][] _shares;
    private readonly OnnxTrainer _trainer;
    private readonly OnnxTrainer _evaluator;
    private readonly float[] _initial;
    private readonly double[] _slowdown;
    private readonly bool[] _malicious;
    private readonly Random[] _sampling;
    private readonly float[] _x;
    private readonly long[] _y;

    public FarSignBenchmark(FarSignBenchmarkOptions options, Dataset train, Dataset test)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _train = train;
        _test = options.EvaluationSamples > 0 && options.EvaluationSamples < test.Count ? test.Take(options.EvaluationSamples) : test;
        _shares = Partition.Apply(options.Partition, train.Labels, options.Devices, options.Seed);

        // The graph standardises its input with the training set's pixel statistics, as `fededge train` does.
        var (mean, std) = PixelStatistics(train);
        var model = ModelZoo.Create(options.Model, [1, 28, 28], 10, options.Seed, mean, std);
        int batch = Math.Max(options.Batch, options.FarSign.Batch);
        _trainer = OnnxTrainer.Create(model, new TrainingOptions { BatchSize = options.Batch, LearningRate = (float)options.LearningRate, Threads = 1, Optimizer = OptimizerKind.Sgd });
        _evaluator = OnnxTrainer.Create(model, new TrainingOptions { ZerothOrder = true, Threads = 1 });
        _initial = new float[_trainer.ParameterCount];
        _trainer.CopyParametersTo(_initial);

        // Speeds and attackers: seeded, and the same for both methods.
        var speeds = new Random(unchecked(options.Seed * 7919 + 0x5bd));
        _slowdown = Enumerable.Range(0, options.Devices).Select(_ => Math.Exp(options.SpeedSigma * StandardNormal(speeds))).ToArray();
        var order = Enumerable.Range(0, options.Devices).ToArray();
        new Random(options.Seed ^ 0x5eed).Shuffle(order);
        _malicious = new bool[options.Devices];
        foreach (int i in order.Take(options.AttackerCount))
        {
            _malicious[i] = true;
        }

        _sampling = Enumerable.Range(0, options.Devices).Select(i => new Random(options.Seed * 1000 + i)).ToArray();
        int largest = Math.Max(batch, options.FarSign.Batch * options.Devices);
        _x = new float[largest * train.SampleSize];
        _y = new long[largest];
    }

    public int Parameters => _initial.Length;

    public IReadOnlyList<double> Slowdowns => _slowdown;

    public IReadOnlyList<bool> Malicious => _malicious;

    public static string DeviceId(int index) => $"dev-{index:D2}";

    public void Dispose()
    {
        _trainer.Dispose();
        _evaluator.Dispose();
    }

    /// <summary>Runs the configured method to the budget; <paramref name="onPoint"/> sees each checkpoint.</summary>
    public BenchmarkRun Run(Action<BenchmarkPoint>? onPoint = null, CancellationToken cancellationToken = default)
    {
        var wall = Stopwatch.StartNew();
        var engine = _options.Method == "far-sign" ? (Engine)new FarSignEngine(this) : new FedBuffEngine(this);
        var model = _initial.ToArray();
        var points = new List<BenchmarkPoint>();
        var queue = new PriorityQueue<int, (double Time, int Device)>();
        double interval = _options.Budget / _options.Checkpoints;
        double nextCheckpoint = 0;
        long messages = 0;
        long bytesUp = 0;
        long bytesDown = 0;
        int refused = 0;
        long modelBytes = 4L * model.Length;

        void Checkpoint(double until)
        {
            while (nextCheckpoint <= until + 1e-9 && nextCheckpoint <= _options.Budget + 1e-9)
            {
                _evaluator.SetParameters(model);
                var evaluation = TrainCommand.Evaluate(_evaluator, _test);
                var point = new BenchmarkPoint(Math.Round(nextCheckpoint, 6), engine.Version, messages, bytesUp, evaluation.Accuracy, evaluation.Loss);
                points.Add(point);
                onPoint?.Invoke(point);
                nextCheckpoint += interval;
            }
        }

        double Start(int device, double now)
        {
            bytesDown += modelBytes;
            var (flops, payload) = engine.StartJob(device, model);
            return now + _options.Cost.Download(modelBytes) + flops * _slowdown[device] / _options.Cost.Flops + _options.Cost.Upload(payload);
        }

        for (int i = 0; i < _options.Devices; i++)
        {
            queue.Enqueue(i, (Start(i, 0), i));
        }

        while (queue.TryDequeue(out int device, out var at))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (at.Time > _options.Budget)
            {
                break;
            }

            Checkpoint(at.Time);
            long payload = engine.Payload(device);
            if (engine.Deliver(device, model) is { } refusal)
            {
                refused++;
                if (refused <= 3)
                {
                    Console.Error.WriteLine($"refused {DeviceId(device)}: {refusal.Reason}");
                }
            }

            messages++;
            bytesUp += payload;
            queue.Enqueue(device, (Start(device, at.Time), device));
        }

        Checkpoint(_options.Budget);
        return new BenchmarkRun(_options.Method, _options.Model, _options.Attack, _options.AttackerCount, engine.Name, model.Length,
            points, messages, engine.Version, bytesUp, bytesDown, refused, wall.Elapsed.TotalSeconds);
    }

    /// <summary>Samples a minibatch of <paramref name="batch"/> from <paramref name="device"/>'s share into the buffers' head.</summary>
    private void Sample(int device, int batch, int offset = 0)
    {
        var share = _shares[device];
        Span<int> indices = stackalloc int[Math.Min(batch, 4096)];
        for (int start = 0; start < batch; start += indices.Length)
        {
            int n = Math.Min(indices.Length, batch - start);
            for (int b = 0; b < n; b++)
            {
                indices[b] = share[_sampling[device].Next(share.Length)];
            }

            int at = offset + start;
            _train.CopyBatch(indices[..n], _x.AsSpan(at * _train.SampleSize, n * _train.SampleSize), _y.AsSpan(at, n));
        }
    }

    private static (float Mean, float Std) PixelStatistics(Dataset data)
    {
        var sample = new float[data.SampleSize];
        double sum = 0;
        double squares = 0;
        int count = Math.Min(data.Count, 10_000);
        for (int i = 0; i < count; i++)
        {
            data.CopyFeatures(i, 1, sample);
            foreach (float v in sample)
            {
                sum += v;
                squares += (double)v * v;
            }
        }

        double n = (double)count * data.SampleSize;
        double mean = sum / n;
        return ((float)mean, (float)Math.Sqrt(Math.Max(1e-12, (squares / n) - (mean * mean))));
    }

    private static double StandardNormal(Random random)
    {
        var u1 = 1.0 - random.NextDouble();
        var u2 = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    private abstract class Engine
    {
        public abstract string Name { get; }

        public abstract long Version { get; }

        /// <summary>Computes the device's message from <paramref name="model"/> (its x̃); returns its cost and payload.</summary>
        public abstract (double Flops, long Payload) StartJob(int device, ReadOnlySpan<float> model);

        public abstract long Payload(int device);

        /// <summary>The server takes the device's message, updating <paramref name="model"/> when a version completes.</summary>
        public abstract Refusal? Deliver(int device, Span<float> model);
    }

    private sealed class FarSignEngine : Engine
    {
        private static readonly DateTimeOffset Epoch = new(2026, 12, 7, 0, 0, 0, TimeSpan.Zero);
        private readonly FarSignBenchmark _bench;
        private readonly FarSignStrategy _strategy;
        private readonly SignAnswerer _answerer;
        private readonly byte[][] _packets;
        private readonly long[] _base;
        private readonly float[] _gradient;
        private readonly float[] _parameters;
        private long _version;

        public FarSignEngine(FarSignBenchmark bench)
        {
            _bench = bench;
            int d = bench.Parameters;
            _strategy = new FarSignStrategy(bench._options.FarSign, d);
            _answerer = new SignAnswerer(d);
            _packets = Enumerable.Range(0, bench._options.Devices).Select(_ => new byte[SignAnswerPacket.Length(bench._options.FarSign.Directions)]).ToArray();
            _base = new long[bench._options.Devices];
            _gradient = new float[d];
            _parameters = new float[d];
        }

        public override string Name => _strategy.Name;

        public override long Version => _version;

        public override long Payload(int device) => SignAnswerPacket.Length(_bench._options.FarSign.Directions);

        public override (double Flops, long Payload) StartJob(int device, ReadOnlySpan<float> model)
        {
            var options = _bench._options.FarSign;
            int d = model.Length;
            int k = options.Directions;
            int batch = options.Batch;
            int sample = _bench._train.SampleSize;
            ulong seed = _strategy.WorkSeed(_version);
            string id = DeviceId(device);
            _base[device] = _version;
            var packet = _packets[device];
            bool attacker = _bench._malicious[device];
            string attack = _bench._options.Attack;
            if (attacker && attack == "colluding")
            {
                // The omniscient adversary: ḡ over the honest devices' minibatches at the attacker's x̃.
                int honest = 0;
                for (int i = 0; i < _bench._options.Devices; i++)
                {
                    if (!_bench._malicious[i])
                    {
                        _bench.Sample(i, batch, honest * batch);
                        honest++;
                    }
                }

                _bench._trainer.ComputeGradient(model, _bench._x.AsSpan(0, honest * batch * sample), _bench._y.AsSpan(0, honest * batch), _gradient);
                SignAnswerAttacks.Colluding(_answerer, seed, id, _gradient, k, packet);
            }
            else
            {
                _bench.Sample(device, batch);
                var x = _bench._x.AsSpan(0, batch * sample);
                var y = _bench._y.AsSpan(0, batch);
                if (options.Order == DerivativeOrder.First)
                {
                    _bench._trainer.ComputeGradient(model, x, y, _gradient);
                    _answerer.AnswerFirstOrder(seed, id, _gradient, k, packet);
                }
                else
                {
                    var features = _bench._x.AsMemory(0, batch * sample);
                    var labels = _bench._y.AsMemory(0, batch);
                    var trainer = _bench._trainer;
                    model.CopyTo(_parameters);
                    _answerer.AnswerZerothOrder(seed, id, _parameters, (float)options.Smoothing, p => trainer.EvaluateLoss(p, features.Span, labels.Span, batch), k, packet);
                }

                if (attacker && attack == "sign-flip")
                {
                    SignAnswerAttacks.Flip(packet);
                }
                else if (attacker && attack == "random")
                {
                    SignAnswerAttacks.Randomize(packet, RademacherDirections.Mix(seed ^ (ulong)device));
                }
            }

            // Cost: the gradient (first order) or two forward passes per direction (zeroth), plus K passes over d
            // for the directions themselves (generation and dot product, or x̃ ± c·u).
            double flops = options.Order == DerivativeOrder.First
                ? DeviceCostModel.GradientFlops(d, batch) + (2.0 * k * d)
                : k * ((2 * DeviceCostModel.ForwardFlops(d, batch)) + (4.0 * d));
            return (flops, packet.Length);
        }

        public override Refusal? Deliver(int device, Span<float> model)
        {
            var version = _strategy.Begin(_strategy.Plan(new VersionContext(_version, Epoch, _bench._options.Devices), [])!);
            if (version.Offer(DeviceContribution.SignAnswers(DeviceId(device), _packets[device], _base[device])) is { } refusal)
            {
                return refusal;
            }

            version.Complete(model);
            _version++;
            return null;
        }
    }

    private sealed class FedBuffEngine : Engine
    {
        private static readonly DateTimeOffset Epoch = new(2026, 12, 7, 0, 0, 0, TimeSpan.Zero);
        private readonly FarSignBenchmark _bench;
        private readonly FedBuffStrategy _strategy;
        private readonly float[][] _deltas;
        private readonly long[] _base;
        private readonly IUpdateAttack? _attack;
        private readonly Queue<float[]> _recentHonest = new();
        private readonly float[] _local;
        private IVersionAggregation? _open;
        private long _version;

        public FedBuffEngine(FarSignBenchmark bench)
        {
            _bench = bench;
            var options = bench._options;
            int d = bench.Parameters;
            int bufferF = SimulatedDevices.Share(options.AttackerFraction, options.BufferSize);
            var server = new ServerAggregator(new ServerAggregatorOptions
            {
                Rule = options.Rule,
                Parameters = new RuleParameters { F = options.Rule == "mean" ? 0 : bufferF },
            }, d);
            _strategy = new FedBuffStrategy(options.BufferSize, new AsyncOptions(), server);
            _deltas = Enumerable.Range(0, options.Devices).Select(_ => new float[d]).ToArray();
            _base = new long[options.Devices];
            _local = new float[d];
            _attack = options.Attack switch
            {
                "sign-flip" => new SignFlipAttack(),
                "random" => new GaussianAttack(variance: 200, options.Seed),
                "colluding" => new LittleIsEnoughAttack(options.Devices, options.AttackerCount),
                _ => null,
            };
        }

        public override string Name => _strategy.Name;

        public override long Version => _version;

        public override long Payload(int device) => 4L * _bench.Parameters;

        public override (double Flops, long Payload) StartJob(int device, ReadOnlySpan<float> model)
        {
            var options = _bench._options;
            var trainer = _bench._trainer;
            int sample = _bench._train.SampleSize;
            trainer.SetParameters(model);
            for (int q = 0; q < options.LocalSteps; q++)
            {
                _bench.Sample(device, options.Batch);
                trainer.TrainStep(_bench._x.AsSpan(0, options.Batch * sample), _bench._y.AsSpan(0, options.Batch));
            }

            trainer.CopyParametersTo(_local);
            var delta = _deltas[device];
            TensorPrimitives.Subtract(_local, model, delta);
            _base[device] = _version;
            if (_bench._malicious[device] && _attack is not null)
            {
                // ALIE forges from what the honest devices sent lately (the omniscient view of the traffic).
                var honest = _recentHonest.Count > 1 ? UpdateBatch.FromRows(_recentHonest.ToArray()) : new UpdateBatch(delta.ToArray(), 1, delta.Length);
                var own = delta.ToArray();
                _attack.Forge(honest, own, delta);
            }
            else if (!_bench._malicious[device])
            {
                _recentHonest.Enqueue(delta.ToArray());
                if (_recentHonest.Count > options.Devices - options.AttackerCount)
                {
                    _recentHonest.Dequeue();
                }
            }

            return (options.LocalSteps * DeviceCostModel.GradientFlops(model.Length, options.Batch), 4L * model.Length);
        }

        public override Refusal? Deliver(int device, Span<float> model)
        {
            _open ??= _strategy.Begin(_strategy.Plan(new VersionContext(_version, Epoch, _bench._options.Devices), [])!);
            if (_open.Offer(DeviceContribution.Update(DeviceId(device), _deltas[device], 1, _base[device])) is { } refusal)
            {
                return refusal;
            }

            if (_open.IsReady)
            {
                _open.Complete(model);
                _open = null;
                _version++;
            }

            return null;
        }
    }
}

/// <summary>Formatting of benchmark figures for the terminal.</summary>
public static class BenchmarkFormat
{
    public static string Percent(double value) => double.IsNaN(value) ? "—" : (100 * value).ToString("F2", CultureInfo.InvariantCulture);

    public static string Seconds(double? value) => value is { } v ? v.ToString("F1", CultureInfo.InvariantCulture) : "—";
}
