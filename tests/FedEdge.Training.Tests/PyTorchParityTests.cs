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
    ];

    [PyTorchTheory]
    [MemberData(nameof(Cases))]
    public void TrainingStepsMatchPyTorch(string spec)
    {
        using var dir = new PyTorchCase(spec);
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

        var model = OnnxModelFile.Load(dir.File("model.onnx"));
        using var trainer = OnnxTrainer.Create(model, options);
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
        var failures = new List<string>();
        for (int k = 0; k < steps; k++)
        {
            float loss = trainer.TrainStep(x.AsSpan(k * batch * sampleSize, batch * sampleSize), y.AsSpan(k * batch, batch));
            double error = Math.Abs(loss - torchLosses[k]) / Math.Abs(torchLosses[k]);
            report.AppendLine(CultureInfo.InvariantCulture, $"step {k}: loss {loss:R} torch {torchLosses[k]:R} rel {error:E2}");
            if (!(error <= Tolerance))
            {
                failures.Add($"loss of step {k}: engine {loss:R}, torch {torchLosses[k]:R}, relative error {error:E2}");
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
}
