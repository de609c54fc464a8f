using System.Globalization;
using System.Text;
using FedEdge.Data;
using FedEdge.Onnx;
using FedEdge.Training;
using Xunit.Abstractions;

namespace FedEdge.Training.Tests;

/// <summary>
/// Whole training steps against PyTorch (issue 2: "tests export models with Debian's python3-torch, train the
/// same steps in both, and compare every parameter (relative error ≤ 1e-4)"). PyTorch/make_case.py builds a small
/// model, exports it with torch.onnx.export, trains K steps on consecutive batches in float64 and writes the
/// initial model, the data and the final parameters keyed by ONNX initializer name; the engine trains the same
/// steps in float32 from the same start, and every parameter, BatchNorm running statistic and per-step loss is
/// compared.
/// </summary>
public sealed class PyTorchParityTests(ITestOutputHelper output)
{
    /// <summary>Largest accepted error of a tensor: max |engine − torch| / max |torch| (and of each step's loss).</summary>
    private const double Tolerance = 1e-4;

    public static TheoryData<string> Cases =>
    [
        "mlp opset=13 optimizer=sgd lr=0.1",
        "mlp opset=17 optimizer=momentum lr=0.05 weight-decay=0.001",
        "mlp opset=17 optimizer=adam lr=0.01 clip=0.5",
        "mlp opset=13 optimizer=sgd lr=0.5 loss=mse",
        "cnn opset=13 optimizer=momentum lr=0.05",
        "cnn opset=17 optimizer=adam lr=0.005 weight-decay=0.0001 clip=1",
        "cnn opset=17 optimizer=sgd lr=0.3 prox-mu=0.05",
        "mixed opset=13 optimizer=sgd lr=0.1",
        "mixed opset=17 optimizer=momentum lr=0.05 prox-mu=0.1 clip=2",
        "mixed opset=17 optimizer=adam lr=0.01 weight-decay=0.01",
        "lenet opset=17 optimizer=momentum lr=0.05 data=fashion-mnist batch=64 steps=4",
        // The batch split across threads (one gradient graph per shard, summed by one update graph); the cnn has
        // BatchNorm, whose batch statistics couple the samples, so it must keep the single graph.
        "cnn opset=17 optimizer=adam lr=0.005 weight-decay=0.0001 clip=1 batch=32 threads=2",
        "mixed opset=17 optimizer=adam lr=0.01 clip=2 prox-mu=0.1 batch=24 threads=3",
        "lenet opset=17 optimizer=momentum lr=0.05 data=fashion-mnist batch=64 steps=4 threads=2",
        "depthwise opset=17 optimizer=sgd lr=0.1 batch=4 steps=3",
        "depthwise opset=13 optimizer=momentum lr=0.3 batch=6 steps=3 threads=2",
    ];

    [PyTorchTheory]
    [MemberData(nameof(Cases))]
    public void TrainingStepsMatchPyTorch(string spec)
    {
        using var dir = new PyTorchCase(spec);
        var run = EngineRun.Train(dir);
        var (trainer, initial, report, failures) = (run.Trainer, run.Initial, run.Report, run.Failures);
        using var disposeTrainer = trainer;
        for (int k = 0; k < run.Losses.Length; k++)
        {
            double error = Math.Abs(run.Losses[k] - run.TorchLosses[k]) / Math.Abs(run.TorchLosses[k]);
            if (!(error <= Tolerance))
            {
                failures.Add($"loss of step {k}: engine {run.Losses[k]:R}, torch {run.TorchLosses[k]:R}, relative error {error:E2}");
            }
        }

        var final = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(final);
        var managed = trainer.Parameters.ToDictionary(p => p.Name, StringComparer.Ordinal);
        int compared = 0;
        foreach (var (name, folder) in dir.ExpectedTensors())
        {
            Assert.True(managed.TryGetValue(name, out var tensor),
                $"PyTorch {(folder == "final" ? "parameter" : "buffer")} '{name}' is not among the trainer's managed tensors: {string.Join(", ", managed.Keys)}");
            double[] expected = NpyArray.Read(dir.File(folder, name + ".npy")).ToFloat64();
            Assert.Equal(expected.Length, tensor.Length);
            var actual = final.AsSpan(tensor.Offset, tensor.Length);
            double maxDiff = 0, maxRef = 0, moved = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
                maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
                moved = Math.Max(moved, Math.Abs(expected[i] - initial[tensor.Offset + i]));
            }
            double relative = maxDiff / Math.Max(maxRef, 1e-12);
            report.AppendLine(CultureInfo.InvariantCulture,
                $"{folder}/{name} [{string.Join("x", tensor.Dims)}]: max|diff| {maxDiff:E2}, max|torch| {maxRef:E3}, moved {moved:E2}, rel {relative:E2}");
            if (!(relative <= Tolerance))
            {
                failures.Add($"{name}: relative error {relative:E2} (max |diff| {maxDiff:E2}, max |torch| {maxRef:E3}, training moved it by {moved:E2})");
            }
            // The comparison is meaningful only if training moved the tensor well beyond the tolerance, so that an
            // engine that left it unchanged (or updated it wrongly) would fail.
            Assert.True(moved > 10 * Tolerance * maxRef || folder == "buffers",
                $"{name} barely moved in PyTorch ({moved:E2}); the case does not test it.");
            compared++;
        }
        Assert.Equal(dir.ExpectedTensors().Count(), compared);

        // The exported inference model carries exactly the trained values.
        var exported = trainer.ExportModel();
        foreach (var initializer in exported.Graph.Initializer)
        {
            if (managed.TryGetValue(initializer.Name, out var tensor))
            {
                Assert.Equal(final.AsSpan(tensor.Offset, tensor.Length).ToArray(), initializer.ToFloatArray());
            }
        }

        output.WriteLine($"{spec}: ops {string.Join(", ", dir.Ops)}");
        output.WriteLine(report.ToString());
        Assert.True(failures.Count == 0, $"{spec}: engine differs from PyTorch:\n{string.Join("\n", failures)}\n\n{report}");
    }

    /// <summary>
    /// torchvision's mobile networks (issue 16), exported by PyTorch in training mode with dropout and stochastic
    /// depth at 0: depthwise and grouped Conv, ReLU6 (Clip), HardSwish / HardSigmoid, squeeze-and-excitation
    /// (GlobalAveragePool, Mul broadcast, Sigmoid), SiLU, channel shuffle (Reshape / Transpose, Split / Slice, Concat),
    /// ReduceMean pooling, overlapping MaxPool; and the two classic CNNs. Small images (32 × 32 or 64 × 64), batch 4
    /// to 8, one or two SGD steps: the suite runs on two cores.
    /// </summary>
    public static TheoryData<string> MobileCases =>
    [
        "mobilenet_v2_035 opset=17 optimizer=sgd lr=0.01 batch=8 steps=1 size=32 float32-floor=1",
        "mobilenet_v3_small opset=17 optimizer=sgd lr=0.01 batch=4 steps=1 size=32 float32-floor=1",
        "shufflenet_v2_x0_5 opset=17 optimizer=sgd lr=0.01 batch=8 steps=1 size=32 seed=1 float32-floor=1",
        "mnasnet0_5 opset=17 optimizer=sgd lr=0.01 batch=8 steps=1 size=32 float32-floor=1",
        "efficientnet_b0 opset=17 optimizer=sgd lr=0.01 batch=8 steps=2 size=32 float32-floor=1",
        "squeezenet1_1 opset=17 optimizer=sgd lr=0.01 batch=4 steps=2 size=32 seed=1 float32-floor=1",
        "resnet18 opset=17 optimizer=sgd lr=0.01 batch=4 steps=1 size=32 float32-floor=1",
        // Earlier opsets: HardSwish is x·HardSigmoid(x) before 14, BatchNormalization without training_mode before 15.
        "mobilenet_v3_small opset=13 optimizer=sgd lr=0.01 batch=4 steps=1 size=32 float32-floor=1",
        "shufflenet_v2_x0_5 opset=15 optimizer=sgd lr=0.01 batch=8 steps=1 size=32 seed=1 float32-floor=1",
    ];

    /// <summary>
    /// Every parameter and BatchNorm statistic is compared relative to the step PyTorch took (max |engine − torch| /
    /// max |torch − initial|, the change floored at 1/1000 of the model's largest step, for the biases of a BatchNorm
    /// followed by a 1×1 Conv and another BatchNorm, whose gradient is zero in exact arithmetic). These networks at
    /// initialisation, with BatchNorm over a few samples and ReLU kinks, amplify rounding so much that PyTorch's own
    /// float32 run of the same steps differs from its float64 reference by more than 1e-4 of the step (up to O(1) for
    /// some seeds and sizes, 1e-4 to 1e-2 for the cases above). make_case.py therefore also runs the steps in float32,
    /// and the engine must be within max(1e-4, 3 × that float32 error) of the float64 reference; a case whose float32
    /// error exceeds 1e-2 fails as ill-chosen, so a wrong gradient rule (errors of order 1) cannot pass.
    /// </summary>
    [PyTorchTheory]
    [MemberData(nameof(MobileCases))]
    public void MobileNetworksMatchPyTorchStepByStep(string spec)
    {
        const double IllConditioned = 1e-2;
        using var dir = new PyTorchCase(spec);
        var run = EngineRun.Train(dir);
        using var trainer = run.Trainer;
        var final = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(final);
        var managed = trainer.Parameters.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var rows = new List<(string Name, string Folder, double Diff, double Floor, double Moved, double MaxRef)>();
        foreach (var (name, folder) in dir.ExpectedTensors())
        {
            Assert.True(managed.TryGetValue(name, out var tensor), $"PyTorch tensor '{name}' is not among the trainer's managed tensors.");
            double[] expected = NpyArray.Read(dir.File(folder, name + ".npy")).ToFloat64();
            double[] float32 = NpyArray.Read(dir.File(folder + "32", name + ".npy")).ToFloat64();
            Assert.Equal(expected.Length, tensor.Length);
            double diff = 0, floor = 0, moved = 0, maxRef = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                diff = Math.Max(diff, Math.Abs(final[tensor.Offset + i] - expected[i]));
                floor = Math.Max(floor, Math.Abs(float32[i] - expected[i]));
                moved = Math.Max(moved, Math.Abs(expected[i] - run.Initial[tensor.Offset + i]));
                maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
            }
            rows.Add((name, folder, diff, floor, moved, maxRef));
        }

        double largestStep = rows.Where(r => r.Folder == "final").Max(r => r.Moved);
        double Scale((string Name, string Folder, double Diff, double Floor, double Moved, double MaxRef) r) =>
            Math.Max(r.Moved, r.Folder == "final" ? 1e-3 * largestStep : 1e-3 * r.MaxRef);
        double caseFloor = rows.Max(r => r.Floor / Scale(r));
        double tolerance = Math.Max(Tolerance, 3 * caseFloor);
        var report = run.Report;
        report.AppendLine(CultureInfo.InvariantCulture,
            $"PyTorch float32 against float64: {caseFloor:E2} of the step at worst; tolerance {tolerance:E2}; largest step {largestStep:E2}");
        var failures = new List<string>();
        for (int k = 0; k < run.Losses.Length; k++)
        {
            double error = Math.Abs(run.Losses[k] - run.TorchLosses[k]) / Math.Abs(run.TorchLosses[k]);
            if (!(error <= tolerance))
            {
                failures.Add($"loss of step {k}: engine {run.Losses[k]:R}, torch {run.TorchLosses[k]:R}, relative error {error:E2}");
            }
        }

        double worst = 0;
        foreach (var r in rows)
        {
            double relative = r.Diff / Scale(r);
            worst = Math.Max(worst, relative);
            report.AppendLine(CultureInfo.InvariantCulture,
                $"{r.Folder}/{r.Name}: max|diff| {r.Diff:E2}, step {r.Moved:E2}, rel {relative:E2}, float32 rel {r.Floor / Scale(r):E2}");
            if (!(relative <= tolerance))
            {
                failures.Add($"{r.Name}: {relative:E2} of the step (max |diff| {r.Diff:E2}, step {r.Moved:E2}; PyTorch float32: {r.Floor / Scale(r):E2})");
            }
        }

        // The training-mode export runs in ONNX Runtime's inference build once trained: evaluation, and the exported
        // model carries inference-form BatchNorm (one output, no training_mode) and the trained values.
        var evaluation = trainer.Evaluate(run.X, run.Y);
        Assert.True(double.IsFinite(evaluation.Loss) && evaluation.Count == run.Y.Length, $"evaluation: loss {evaluation.Loss}, {evaluation.Count} samples");
        var exported = trainer.ExportModel();
        Assert.All(exported.Graph.Node.Where(n => n.OpType == "BatchNormalization"),
            n => Assert.True(n.Output.Count == 1 && n.Attribute.All(a => a.Name != "training_mode"), $"{n.Name} is not in inference form"));
        foreach (var initializer in exported.Graph.Initializer)
        {
            if (managed.TryGetValue(initializer.Name, out var tensor))
            {
                Assert.Equal(final.AsSpan(tensor.Offset, tensor.Length).ToArray(), initializer.ToFloatArray());
            }
        }

        output.WriteLine($"{spec}: ops {string.Join(", ", dir.Ops)}; {rows.Count} tensors, worst {worst:E2} of the step, float32 floor {caseFloor:E2}");
        output.WriteLine(report.ToString());
        Assert.True(caseFloor <= IllConditioned,
            $"{spec}: PyTorch's own float32 run differs from float64 by {caseFloor:E2} of the step; pick a better-conditioned case (seed, size, batch).\n{report}");
        Assert.True(failures.Count == 0, $"{spec}: engine differs from PyTorch:\n{string.Join("\n", failures)}\n\n{report}");
    }

    /// <summary>The engine's run of a case: the steps of make_case.py from the same start, on the same batches.</summary>
    private sealed record EngineRun(OnnxTrainer Trainer, float[] Initial, float[] Losses, double[] TorchLosses, StringBuilder Report, List<string> Failures,
        float[] X, long[] Y)
    {
        public static EngineRun Train(PyTorchCase dir)
        {
            var settings = dir.Settings;
            int batch = settings.Int("batch", 8), steps = settings.Int("steps", 5);
            var options = new TrainingOptions
            {
                BatchSize = batch,
                LearningRate = settings.Float("lr"),
                Optimizer = settings.Get("optimizer") switch
                {
                    "momentum" => OptimizerKind.Momentum,
                    "adam" => OptimizerKind.Adam,
                    _ => OptimizerKind.Sgd,
                },
                Momentum = 0.9f,
                WeightDecay = settings.Float("weight-decay"),
                ClipNorm = settings.Float("clip"),
                ProximalMu = settings.Float("prox-mu"),
                Loss = settings.Get("loss") == "mse" ? LossKind.MeanSquaredError : LossKind.CrossEntropy,
                Threads = settings.Int("threads", 1),
                BatchSplit = BatchSplitMode.Always,
            };

            var trainer = OnnxTrainer.Create(OnnxModelFile.Load(dir.File("model.onnx")), options);
            Assert.Equal(dir.Buffers.Length == 0 ? options.Threads : 1, trainer.ShardsFor(batch));
            var initial = new float[trainer.ParameterCount];
            trainer.CopyParametersTo(initial);
            if (options.ProximalMu > 0)
            {
                // FedProx anchors at the model the round started from: the initial weights, as in make_case.py.
                trainer.SetProximalAnchor(initial);
            }

            float[] x = NpyArray.Read(dir.File("x.npy")).ToFloat32();
            long[] y = NpyArray.Read(dir.File("y.npy")).ToInt64();
            double[] torchLosses = NpyArray.Read(dir.File("losses.npy")).ToFloat64();
            int sampleSize = x.Length / y.Length;
            var report = new StringBuilder();
            var losses = new float[steps];
            for (int k = 0; k < steps; k++)
            {
                losses[k] = trainer.TrainStep(x.AsSpan(k * batch * sampleSize, batch * sampleSize), y.AsSpan(k * batch, batch));
                report.AppendLine(CultureInfo.InvariantCulture,
                    $"step {k}: loss {losses[k]:R} torch {torchLosses[k]:R} rel {Math.Abs(losses[k] - torchLosses[k]) / Math.Abs(torchLosses[k]):E2}");
            }

            return new EngineRun(trainer, initial, losses, torchLosses, report, [], x, y);
        }
    }
}
