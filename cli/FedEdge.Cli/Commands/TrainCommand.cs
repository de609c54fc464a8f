using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using FedEdge.Data;
using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Training;
using FedEdge.Training.Autodiff;
using FedEdge.Training.Zoo;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge train`: trains a zoo model or an ONNX file on a data set with the FedEdge training engine
/// and writes the trained inference model (and optional per-epoch metrics JSON).
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = $"Zoo model ({string.Join(", ", ModelZoo.Names)}) or path to an .onnx file.", Required = true };
        var data = new Option<string>("--data") { Description = "fashion-mnist | npy:X.npy,Y.npy[,Xtest.npy,Ytest.npy] | csv:train.csv[,test.csv]", Required = true };
        var epochs = new Option<int>("--epochs") { Description = "Passes over the training set.", DefaultValueFactory = _ => 1 };
        var steps = new Option<int?>("--steps") { Description = "Stop after this many steps (instead of --epochs)." };
        var batch = new Option<int>("--batch") { Description = "Batch size.", DefaultValueFactory = _ => 64 };
        var lr = new Option<float?>("--lr") { Description = "Learning rate (default 0.004 for adam, 0.05 for sgd and momentum)." };
        var optimizer = new Option<string>("--optimizer") { Description = "sgd | momentum | adam", DefaultValueFactory = _ => "adam" };
        optimizer.AcceptOnlyFromAmong("sgd", "momentum", "adam");
        var momentum = new Option<float>("--momentum") { Description = "Momentum for --optimizer momentum.", DefaultValueFactory = _ => 0.9f };
        var weightDecay = new Option<float>("--weight-decay") { Description = "L2 weight decay.", DefaultValueFactory = _ => 0f };
        var clip = new Option<float>("--clip-norm") { Description = "Global gradient-norm clipping (0 = off).", DefaultValueFactory = _ => 0f };
        var loss = new Option<string>("--loss") { Description = "cross-entropy | mse", DefaultValueFactory = _ => "cross-entropy" };
        loss.AcceptOnlyFromAmong("cross-entropy", "mse");
        var seed = new Option<int>("--seed") { Description = "Seed for initialisation, shuffling, dropout and zeroth-order directions.", DefaultValueFactory = _ => 0 };
        var shuffle = new Option<bool>("--shuffle") { Description = "Shuffle each epoch; false = consecutive slices in order.", DefaultValueFactory = _ => true };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads (0 = all cores).", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu | cuda | auto", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong("cpu", "cuda", "auto");
        var zeroth = new Option<bool>("--zeroth-order") { Description = "Two-point zeroth-order gradient estimates (forward passes only)." };
        var schedule = new Option<string>("--lr-schedule")
        {
            Description = "constant | cosine (η·(1 + cos(π·t/T))/2 over the T steps of the run, Loshchilov & Hutter 2017, no restarts).",
            DefaultValueFactory = _ => "cosine",
        };
        schedule.AcceptOnlyFromAmong("constant", "cosine");
        var output = new Option<FileInfo>("--out") { Description = "Where to write the trained ONNX model.", Required = true };
        var metrics = new Option<FileInfo?>("--metrics") { Description = "Write per-epoch metrics JSON here." };
        var command = new Command("train", "Train an ONNX model on a data set with the FedEdge training engine.")
        {
            model, data, epochs, steps, batch, lr, optimizer, momentum, weightDecay, clip, loss, seed, shuffle, threads, device,
            zeroth, schedule, output, metrics,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var options = new TrainingOptions
            {
                BatchSize = parse.GetValue(batch),
                LearningRate = parse.GetValue(lr) ?? (parse.GetValue(optimizer) == "adam" ? 0.004f : 0.05f),
                Optimizer = ParseOptimizer(parse.GetValue(optimizer)!),
                Momentum = parse.GetValue(momentum),
                WeightDecay = parse.GetValue(weightDecay),
                ClipNorm = parse.GetValue(clip),
                Loss = ParseLoss(parse.GetValue(loss)!),
                Seed = parse.GetValue(seed),
                Threads = parse.GetValue(threads),
                Device = ParseDevice(parse.GetValue(device)!),
                ZerothOrder = parse.GetValue(zeroth),
            };
            var run = new TrainRun(parse.GetValue(model)!, parse.GetValue(data)!, Math.Max(1, parse.GetValue(epochs)), parse.GetValue(steps),
                parse.GetValue(shuffle), parse.GetValue(output)!, parse.GetValue(metrics), parse.GetValue(schedule) == "cosine");
            return Task.FromResult(Guarded(() => Run(run, options, cancellationToken)));
        });
        return command;
    }

    private sealed record TrainRun(string Model, string Data, int Epochs, int? Steps, bool Shuffle, FileInfo Output, FileInfo? Metrics, bool Cosine);

    private sealed record EpochMetrics(int Epoch, long Steps, double TrainLoss, double? TestLoss, double? TestAccuracy,
        double SamplesPerSecond, double Seconds);

    private static int Run(TrainRun run, TrainingOptions options, CancellationToken cancellationToken)
    {
        var source = DatasetSource.Parse(run.Data);
        var loaded = source.Load(source.Kind == DatasetSourceKind.FashionMnist ? FeatureStorage.Byte : FeatureStorage.Float32);
        var train = loaded.Train;
        if (!train.HasLabels)
        {
            throw new ArgumentException($"'{run.Data}' has float targets; fededge train needs integer class labels.");
        }

        var model = LoadModel(run.Model, train, options.Seed);
        using var trainer = OnnxTrainer.Create(model, options);
        CheckShapes(trainer, train, run.Data);
        Console.WriteLine($"model {run.Model}: {trainer.ParameterCount:N0} parameters, input [{string.Join(", ", trainer.SampleShape)}], " +
                          $"{trainer.ClassCount} classes; data {train.Count:N0} training samples" +
                          (loaded.Test is null ? "" : $", {loaded.Test.Count:N0} test samples") +
                          $"; {(options.ZerothOrder ? "zeroth-order" : "gradient")} mode, {options.Optimizer.ToString().ToLowerInvariant()}, " +
                          $"lr {options.LearningRate}, batch {options.BatchSize}; execution provider {trainer.ExecutionProvider}");

        var batch = options.BatchSize;
        var x = new float[batch * train.SampleSize];
        var y = new long[batch];
        var order = Enumerable.Range(0, train.Count).ToArray();
        var epochMetrics = new List<EpochMetrics>();
        var progress = new ProgressLine();
        long totalSteps = 0;
        var stoppedOnNaN = false;
        var total = Stopwatch.StartNew();
        var stepsPerEpoch = (train.Count + batch - 1) / batch;
        var plannedSteps = run.Steps ?? (long)stepsPerEpoch * run.Epochs;
        for (var epoch = 1; epoch <= (run.Steps is null ? run.Epochs : int.MaxValue) && !stoppedOnNaN; epoch++)
        {
            if (run.Shuffle)
            {
                new Random(options.Seed + epoch).Shuffle(order);
            }

            var watch = Stopwatch.StartNew();
            double lossSum = 0;
            long samples = 0, epochSteps = 0;
            for (var start = 0; start < train.Count; start += batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var n = Math.Min(batch, train.Count - start);
                if (run.Shuffle)
                {
                    train.CopyBatch(order.AsSpan(start, n), x.AsSpan(0, n * train.SampleSize), y.AsSpan(0, n));
                }
                else
                {
                    train.CopyRange(start, n, x.AsSpan(0, n * train.SampleSize), y.AsSpan(0, n));
                }

                if (run.Cosine)
                {
                    trainer.LearningRate = (float)(options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * totalSteps / plannedSteps)));
                }

                var loss = trainer.TrainStep(x.AsSpan(0, n * train.SampleSize), y.AsSpan(0, n));
                if (!float.IsFinite(loss))
                {
                    progress.Clear();
                    Console.Error.WriteLine($"error: the loss became {loss} at epoch {epoch}, step {totalSteps + 1}; " +
                                            "training stopped and the last good weights are kept.");
                    stoppedOnNaN = true;
                    break;
                }

                lossSum += loss * n;
                samples += n;
                epochSteps++;
                totalSteps++;
                progress.Report($"epoch {epoch} {100.0 * (start + n) / train.Count,5:F1}%  loss {lossSum / samples:F4}  " +
                                $"{samples / watch.Elapsed.TotalSeconds:F0} samples/s");
                if (run.Steps is { } limit && totalSteps >= limit)
                {
                    break;
                }
            }

            watch.Stop();
            progress.Clear();
            EvaluationResult? test = loaded.Test is null ? null : Evaluate(trainer, loaded.Test);
            var m = new EpochMetrics(epoch, epochSteps, samples == 0 ? double.NaN : lossSum / samples, test?.Loss, test?.Accuracy,
                samples / watch.Elapsed.TotalSeconds, watch.Elapsed.TotalSeconds);
            epochMetrics.Add(m);
            Console.WriteLine($"epoch {epoch}: train loss {m.TrainLoss:F4}" +
                              (test is { } t ? $", test loss {t.Loss:F4}, test accuracy {100 * t.Accuracy:F2}%" : "") +
                              $", {m.SamplesPerSecond:F0} samples/s ({m.Seconds:F1} s)");
            if (run.Steps is { } stepLimit && totalSteps >= stepLimit)
            {
                break;
            }
        }

        OnnxModelFile.Save(trainer.ExportModel(), run.Output.FullName);
        var peak = PeakMemory.ResidentBytes();
        Console.WriteLine($"trained model written to {run.Output.FullName}; {totalSteps} steps in {total.Elapsed.TotalSeconds:F1} s; " +
                          $"peak memory {peak / 1048576.0:F0} MiB");
        if (run.Metrics is not null)
        {
            var json = new
            {
                model = run.Model,
                data = run.Data,
                executionProvider = trainer.ExecutionProvider,
                options = new
                {
                    options.BatchSize,
                    options.LearningRate,
                    optimizer = options.Optimizer.ToString(),
                    options.Momentum,
                    options.WeightDecay,
                    options.ClipNorm,
                    loss = options.Loss.ToString(),
                    options.Seed,
                    options.Threads,
                    options.ZerothOrder,
                    shuffle = run.Shuffle,
                    lrSchedule = run.Cosine ? "cosine" : "constant",
                },
                parameters = trainer.ParameterCount,
                steps = totalSteps,
                stoppedOnNaN,
                peakMemoryBytes = peak,
                epochs = epochMetrics,
            };
            Directory.CreateDirectory(Path.GetDirectoryName(run.Metrics.FullName)!);
            File.WriteAllText(run.Metrics.FullName, JsonSerializer.Serialize(json, new JsonSerializerOptions
            {
                WriteIndented = true,
                PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
                NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
            }));
        }

        return stoppedOnNaN ? 3 : 0;
    }

    /// <summary>A zoo model sized for the data set, or an ONNX file.</summary>
    internal static ModelProto LoadModel(string spec, Dataset data, int seed)
    {
        if (ModelZoo.Contains(spec) && !File.Exists(spec))
        {
            var (mean, std) = FeatureMoments(data);
            return ModelZoo.Create(spec, data.SampleShape, Math.Max(2, data.ClassCount), seed, mean, std);
        }

        return OnnxModelFile.Load(spec);
    }

    /// <summary>Mean and standard deviation over all feature values (zoo models standardise their input with them).</summary>
    internal static (float Mean, float Std) FeatureMoments(Dataset data, int chunk = 1000)
    {
        var x = new float[chunk * data.SampleSize];
        double sum = 0, sumSquares = 0;
        for (var start = 0; start < data.Count; start += chunk)
        {
            var n = Math.Min(chunk, data.Count - start);
            var span = x.AsSpan(0, n * data.SampleSize);
            data.CopyFeatures(start, n, span);
            sum += System.Numerics.Tensors.TensorPrimitives.Sum<float>(span);
            sumSquares += System.Numerics.Tensors.TensorPrimitives.SumOfSquares<float>(span);
        }

        var count = (double)data.Count * data.SampleSize;
        var mean = sum / count;
        var std = Math.Sqrt(Math.Max(sumSquares / count - mean * mean, 0));
        return ((float)mean, std > 1e-6 ? (float)std : 1f);
    }

    internal static void CheckShapes(OnnxTrainer trainer, Dataset data, string dataSpec)
    {
        var expected = trainer.SampleShape.Aggregate(1, (a, d) => a * d);
        if (expected != data.SampleSize)
        {
            throw new ArgumentException(
                $"Input shape mismatch: the model expects samples of shape [{string.Join(", ", trainer.SampleShape)}] ({expected} values), " +
                $"but '{dataSpec}' has samples of shape [{string.Join(", ", data.SampleShape)}] ({data.SampleSize} values).");
        }

        if (data.ClassCount > trainer.ClassCount)
        {
            throw new ArgumentException($"'{dataSpec}' has {data.ClassCount} classes but the model outputs {trainer.ClassCount}.");
        }
    }

    /// <summary>
    /// Evaluates in chunks so byte-stored data sets are never expanded to floats as a whole; small chunks
    /// also keep ONNX Runtime's activation arena (and so peak memory) small.
    /// </summary>
    internal static EvaluationResult Evaluate(OnnxTrainer trainer, Dataset data, int chunk = 250)
    {
        var x = new float[chunk * data.SampleSize];
        var y = new long[chunk];
        double lossSum = 0, correct = 0;
        for (var start = 0; start < data.Count; start += chunk)
        {
            var n = Math.Min(chunk, data.Count - start);
            data.CopyRange(start, n, x.AsSpan(0, n * data.SampleSize), y.AsSpan(0, n));
            var r = trainer.Evaluate(x.AsSpan(0, n * data.SampleSize), y.AsSpan(0, n), chunk);
            lossSum += r.Loss * n;
            correct += r.Accuracy * n;
        }

        return new EvaluationResult(lossSum / data.Count, correct / data.Count, data.Count);
    }

    /// <summary>Runs a command body, turning bad-input exceptions into one clear error line and exit code 2.</summary>
    internal static int Guarded(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is OnnxFormatException or UnsupportedOperatorException or ArgumentException or FormatException
                                       or FileNotFoundException or DirectoryNotFoundException or InvalidDataException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
    }

    internal static OptimizerKind ParseOptimizer(string s) => s switch
    {
        "sgd" => OptimizerKind.Sgd,
        "momentum" => OptimizerKind.Momentum,
        "adam" => OptimizerKind.Adam,
        _ => throw new ArgumentException($"Unknown optimizer '{s}'."),
    };

    internal static LossKind ParseLoss(string s) => s switch
    {
        "cross-entropy" => LossKind.CrossEntropy,
        "mse" => LossKind.MeanSquaredError,
        _ => throw new ArgumentException($"Unknown loss '{s}'."),
    };

    internal static ExecutionDevice ParseDevice(string s) => s switch
    {
        "cpu" => ExecutionDevice.Cpu,
        "cuda" => ExecutionDevice.Cuda,
        "auto" => ExecutionDevice.Auto,
        _ => throw new ArgumentException($"Unknown device '{s}'."),
    };

    /// <summary>A single progress line rewritten in place on a terminal, at most a few times per second.</summary>
    private sealed class ProgressLine
    {
        private readonly bool _interactive = !Console.IsErrorRedirected;
        private readonly Stopwatch _since = Stopwatch.StartNew();
        private int _width;

        public void Report(string text)
        {
            if (!_interactive || _since.ElapsedMilliseconds < 250)
            {
                return;
            }

            _since.Restart();
            Console.Error.Write("\r" + text.PadRight(_width));
            _width = text.Length;
        }

        public void Clear()
        {
            if (_interactive && _width > 0)
            {
                Console.Error.Write("\r" + new string(' ', _width) + "\r");
                _width = 0;
            }
        }
    }
}

/// <summary>Peak resident memory of this process.</summary>
internal static class PeakMemory
{
    public static long ResidentBytes()
    {
        // Linux: VmHWM is the peak resident set size ("high water mark").
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }

        return Process.GetCurrentProcess().PeakWorkingSet64;
    }
}
