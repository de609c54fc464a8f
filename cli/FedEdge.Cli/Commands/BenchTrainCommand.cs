using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using FedEdge.Onnx;
using FedEdge.Training;
using FedEdge.Training.Zoo;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge bench train`: training-step throughput of a zoo model on random 28×28 data, or of an ONNX file on random
/// data of its input shape (the speed of a
/// step does not depend on the values), for comparison with bench/'s PyTorch peer script run with the
/// same model, batch, steps and threads.
/// </summary>
internal static class BenchTrainCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Zoo model, or an ONNX file (random data of its input shape).", DefaultValueFactory = _ => "mlp" };
        var batch = new Option<int>("--batch") { Description = "Batch size.", DefaultValueFactory = _ => 64 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads.", DefaultValueFactory = _ => 2 };
        var steps = new Option<int?>("--steps") { Description = "Timed steps (default: 2000 for mlp/logreg, 300 otherwise)." };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps first.", DefaultValueFactory = _ => 20 };
        var optimizer = new Option<string>("--optimizer") { Description = "sgd | momentum | adam (bench/train_peer_pytorch.py uses momentum).", DefaultValueFactory = _ => "momentum" };
        optimizer.AcceptOnlyFromAmong("sgd", "momentum", "adam");
        var device = new Option<string>("--device") { Description = "cpu | cuda | auto", DefaultValueFactory = _ => "cpu" };
        device.AcceptOnlyFromAmong("cpu", "cuda", "auto");
        var json = new Option<FileInfo?>("--json") { Description = "Also write the figures as JSON here." };
        var command = new Command("train", "Measure training steps/s and samples/s of a zoo model or an ONNX file.")
        {
            model, batch, threads, steps, warmup, optimizer, device, json,
        };
        command.SetAction(parse => TrainCommand.Guarded(() =>
        {
            var name = parse.GetValue(model)!;
            var b = parse.GetValue(batch);
            var t = parse.GetValue(threads);
            var n = parse.GetValue(steps) ?? (name is "mlp" or "logreg" ? 2000 : 300);
            var options = new TrainingOptions
            {
                BatchSize = b,
                Threads = t,
                LearningRate = 0.01f,
                Optimizer = TrainCommand.ParseOptimizer(parse.GetValue(optimizer)!),
                Device = TrainCommand.ParseDevice(parse.GetValue(device)!),
            };
            var isFile = name.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);
            using var trainer = OnnxTrainer.Create(isFile ? OnnxModelFile.Load(name) : ModelZoo.Create(name, [1, 28, 28], 10, seed: 0), options);
            var random = new Random(0);
            var x = new float[b * trainer.SampleShape.Aggregate(1, (a, d) => a * d)];
            var y = new long[b];
            for (var i = 0; i < x.Length; i++)
            {
                x[i] = random.NextSingle();
            }

            for (var i = 0; i < y.Length; i++)
            {
                y[i] = random.Next(trainer.ClassCount);
            }

            for (var i = 0; i < parse.GetValue(warmup); i++)
            {
                trainer.TrainStep(x, y);
            }

            var allocated = GC.GetAllocatedBytesForCurrentThread();
            var watch = Stopwatch.StartNew();
            for (var i = 0; i < n; i++)
            {
                trainer.TrainStep(x, y);
            }

            watch.Stop();
            var perStepAlloc = (GC.GetAllocatedBytesForCurrentThread() - allocated) / (double)n;
            var stepsPerSecond = n / watch.Elapsed.TotalSeconds;
            Console.WriteLine($"fededge train step: model {name}, batch {b}, threads {t}, {n} steps, provider {trainer.ExecutionProvider}, " +
                              $"{trainer.ParameterCount:N0} parameters");
            Console.WriteLine($"steps/s   {stepsPerSecond:F1}");
            Console.WriteLine($"samples/s {stepsPerSecond * b:F0}");
            Console.WriteLine($"ms/step   {1000 / stepsPerSecond:F3}");
            Console.WriteLine($"RESULT framework=fededge model={name} batch={b} threads={t} steps={n} data=random " +
                              $"samples_per_s={stepsPerSecond * b:F1} steps_per_s={stepsPerSecond:F2} ms_per_step={1000 / stepsPerSecond:F4}");
            Console.WriteLine($"managed allocation per step {perStepAlloc:F0} B; peak memory {PeakMemory.ResidentBytes() / 1048576.0:F0} MiB");
            if (parse.GetValue(json) is { } file)
            {
                File.WriteAllText(file.FullName, JsonSerializer.Serialize(new
                {
                    framework = "fededge",
                    model = name,
                    batch = b,
                    threads = t,
                    steps = n,
                    stepsPerSecond,
                    samplesPerSecond = stepsPerSecond * b,
                    provider = trainer.ExecutionProvider,
                }));
            }

            return 0;
        }));
        return command;
    }
}
