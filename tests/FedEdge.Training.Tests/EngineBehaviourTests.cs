using System.Diagnostics;
using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Training.Autodiff;
using FedEdge.Training.Zoo;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using static FedEdge.Onnx.GraphBuilder;
using DataType = FedEdge.Onnx.Proto.TensorProto.Types.DataType;

namespace FedEdge.Training.Tests;

/// <summary>Errors on bad input, export round trips, the flat parameter vector, zeroth-order mode.</summary>
public sealed class EngineBehaviourTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fededge-training-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static TrainingOptions Small(OptimizerKind optimizer = OptimizerKind.Sgd) =>
        new() { BatchSize = 16, LearningRate = 0.1f, Optimizer = optimizer, Threads = 1 };

    [Fact]
    public void LoadingAFileThatIsNotOnnxNamesTheFile()
    {
        var path = Path.Combine(_dir, "notes.onnx");
        File.WriteAllText(path, "this is a text file, not a model\n");
        var e = Assert.Throws<OnnxFormatException>(() => OnnxModelFile.Load(path));
        Assert.Contains("notes.onnx", e.Message);
        Assert.Contains("is not an ONNX model", e.Message);

        File.WriteAllBytes(path, []);
        Assert.Throws<OnnxFormatException>(() => OnnxModelFile.Load(path));
    }

    [Fact]
    public void ModelSaveAndLoadRoundTripsEveryField()
    {
        var model = ModelZoo.Create("cnn", [1, 28, 28], 10, seed: 3);
        var path = Path.Combine(_dir, "cnn.onnx");
        OnnxModelFile.Save(model, path);
        var loaded = OnnxModelFile.Load(path);
        Assert.Equal(model, loaded);
        Assert.Equal(model.ToByteArray(), loaded.ToByteArray());
        Assert.Equal(17, loaded.DefaultOpset());
        var w = loaded.Graph.Initializer.Single(t => t.Name == "conv1.weight");
        Assert.Equal([6L, 1, 5, 5], w.Dims);
        // PyTorch's default init bound for conv1: 1/√(1·5·5) = 0.2.
        Assert.All(w.ToFloatArray(), v => Assert.InRange(v, -0.2f, 0.2f));
    }

    [Fact]
    public void TypedTensorFieldsAndRawDataReadTheSame()
    {
        var typed = new TensorProto { Name = "t", DataType = (int)DataType.Float };
        typed.Dims.Add(3);
        typed.FloatData.Add([1f, -2f, 3.5f]);
        var raw = TensorProtoExtensions.Create("t", [1f, -2f, 3.5f], 3);
        Assert.Equal(typed.ToFloatArray(), raw.ToFloatArray());
        var ints = new TensorProto { Name = "i", DataType = (int)DataType.Int64 };
        ints.Dims.Add(2);
        ints.Int64Data.Add([7, -9]);
        Assert.Equal([7L, -9], ints.ToInt64Array());
        Assert.Equal([0.25, -1.5], TensorProtoExtensions.Create("d", [0.25, -1.5], 2).ToDoubleArray());
        Assert.Throws<OnnxFormatException>(() => ints.ToFloatArray());
    }

    [Fact]
    public void AnOpWithoutAGradientRuleIsNamedAndZerothOrderIsSuggested()
    {
        var model = ModelZoo.Create("mlp", [8], 3, seed: 1);
        // Put Hardmax (no gradient rule) between the hidden layer and the output layer.
        var relu = model.Graph.Node.First(n => n.OpType == "Relu");
        var hidden = relu.Output[0];
        relu.Output[0] = "pre_hardmax";
        var hardmax = new NodeProto { OpType = "Hardmax", Name = "my_hardmax" };
        hardmax.Input.Add("pre_hardmax");
        hardmax.Output.Add(hidden);
        hardmax.Attribute.Add(Attr("axis", 1L));
        model.Graph.Node.Insert(model.Graph.Node.IndexOf(relu) + 1, hardmax);

        var e = Assert.Throws<UnsupportedOperatorException>(() => OnnxTrainer.Create(model, Small()));
        Assert.Equal("Hardmax", e.OpType);
        Assert.Equal("my_hardmax", e.NodeName);
        Assert.Contains("--zeroth-order", e.Message);

        // The same model trains in zeroth-order mode (only the output layer can learn through Hardmax).
        using var trainer = OnnxTrainer.Create(model, Small() with { ZerothOrder = true });
        var (x, y) = SyntheticData.Blobs(16, 8, 3, seed: 4);
        Assert.True(float.IsFinite(trainer.TrainStep(x, y)));
    }

    [Fact]
    public void DataThatDoesNotFitTheModelInputIsRejectedWithBothShapes()
    {
        using var trainer = OnnxTrainer.Create(ModelZoo.Create("logreg", [1, 4, 4], 3), Small());
        var e = Assert.Throws<ArgumentException>(() => trainer.TrainStep(new float[16 * 15], new long[16]));
        Assert.Contains("Input shape mismatch", e.Message);
        Assert.Contains("[1, 4, 4]", e.Message);
        Assert.Contains("240", e.Message);
        var bad = Assert.Throws<ArgumentException>(() => trainer.TrainStep(new float[16 * 16], Enumerable.Repeat(5L, 16).ToArray()));
        Assert.Contains("Label 5", bad.Message);
    }

    [Fact]
    public void OpsetsOutsideTheSupportedRangeAreRejected()
    {
        var model = ModelZoo.Create("logreg", [4], 2);
        model.OpsetImport[0].Version = 11;
        var e = Assert.Throws<OnnxFormatException>(() => OnnxTrainer.Create(model, Small()));
        Assert.Contains("opset 11", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)] // the batch split across two threads
    public void ANonFiniteLossRollsBackToTheLastWeightsWithAFiniteLoss(int threads)
    {
        using var trainer = OnnxTrainer.Create(ModelZoo.Create("mlp", [6], 3, seed: 2), Small(OptimizerKind.Momentum) with { Threads = threads, BatchSplit = BatchSplitMode.Always });
        Assert.Equal(threads, trainer.ShardsFor(16));
        var (x, y) = SyntheticData.Blobs(16, 6, 3, seed: 5);
        var w0 = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(w0);
        Assert.True(float.IsFinite(trainer.TrainStep(x, y)));
        var w1 = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(w1);
        Assert.NotEqual(w0, w1);
        Assert.Equal(1, trainer.StepCount);

        // The loss of w1 on this batch is NaN, so w1 is not good: back to w0, whose loss was finite.
        x[7] = float.NaN;
        Assert.True(float.IsNaN(trainer.TrainStep(x, y)));
        var after = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(after);
        Assert.Equal(w0, after);
        Assert.Equal(0, trainer.StepCount);

        // An update that overflows (finite loss, infinite weights) is discarded; the weights stay.
        x[7] = 0;
        for (var i = 0; i < x.Length; i++)
        {
            x[i] *= 1e4f;
        }

        trainer.LearningRate = 1e38f;
        Assert.False(float.IsFinite(trainer.TrainStep(x, y)));
        trainer.CopyParametersTo(after);
        Assert.Equal(w0, after);

        // Training continues normally from there.
        trainer.LearningRate = 0.1f;
        Assert.True(float.IsFinite(trainer.TrainStep(x.Select(v => v / 1e4f).ToArray(), y)));
        Assert.Equal(1, trainer.StepCount);
    }

    [Fact]
    public void ExportedModelLoadsInOnnxRuntimeAndCarriesTheTrainedWeights()
    {
        var model = ModelZoo.Create("cnn", [1, 16, 16], 4, seed: 6);
        var (x, y) = SyntheticData.Blobs(64, 256, 4, seed: 7);
        using var trainer = OnnxTrainer.Create(model, Small(OptimizerKind.Adam) with { LearningRate = 0.01f });
        for (var i = 0; i < 4; i++)
        {
            trainer.TrainStep(x.AsSpan(i * 16 * 256, 16 * 256), y.AsSpan(i * 16, 16));
        }

        var path = Path.Combine(_dir, "trained.onnx");
        OnnxModelFile.Save(trainer.ExportModel(), path);
        var exported = OnnxModelFile.Load(path);
        Assert.Equal(model.Graph.Node, exported.Graph.Node);
        Assert.NotEqual(model.Graph.Initializer, exported.Graph.Initializer);

        // Plain ONNX Runtime inference on the file gives the same predictions as the trainer's evaluation.
        using var session = new InferenceSession(path);
        using var input = OrtValue.CreateTensorValueFromMemory(x, [64, 1, 16, 16]);
        using var results = session.Run(new RunOptions(), ["input"], [input], ["logits"]);
        var logits = results[0].GetTensorDataAsSpan<float>().ToArray();
        var correct = Enumerable.Range(0, 64).Count(i =>
            Array.IndexOf(logits, logits.AsSpan(i * 4, 4).ToArray().Max(), i * 4, 4) - i * 4 == y[i]);
        Assert.Equal(trainer.Evaluate(x, y).Accuracy, correct / 64.0, 6);

        using var reloaded = OnnxTrainer.Create(exported, Small());
        var a = new float[trainer.ParameterCount];
        var b = new float[reloaded.ParameterCount];
        trainer.CopyParametersTo(a);
        reloaded.CopyParametersTo(b);
        Assert.Equal(a, b);
        Assert.Equal(trainer.Evaluate(x, y).Loss, reloaded.Evaluate(x, y).Loss, 5);

        // ONNX's own checker is the oracle for the exported file; its absence is a failure, not a pass.
        Assert.True(File.Exists("/usr/bin/python3"), "/usr/bin/python3 is missing: run scripts/install-deps.sh --test (python3, python3-onnx)");
        using var check = Process.Start(new ProcessStartInfo("/usr/bin/python3", ["-c", $"import onnx; onnx.checker.check_model(onnx.load('{path}')); print('ok')"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var stdout = check.StandardOutput.ReadToEnd();
        var stderr = check.StandardError.ReadToEnd();
        check.WaitForExit();
        Assert.False(stderr.Contains("No module named", StringComparison.Ordinal), "python3-onnx is missing: run scripts/install-deps.sh --test\n" + stderr);
        Assert.True(check.ExitCode == 0 && stdout.Contains("ok", StringComparison.Ordinal), stderr);
    }

    [Fact]
    public void FlatParameterVectorFollowsInitializerOrderAndRoundTrips()
    {
        using var trainer = OnnxTrainer.Create(ModelZoo.Create("mlp", [10], 3, seed: 8), Small(OptimizerKind.Momentum));
        Assert.Equal(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], trainer.Parameters.Select(p => p.Name));
        Assert.Equal(10 * 128 + 128 + 128 * 3 + 3, trainer.ParameterCount);
        var v = Enumerable.Range(0, trainer.ParameterCount).Select(i => (float)Math.Sin(i)).ToArray();
        trainer.SetParameters(v);
        var back = new float[v.Length];
        trainer.CopyParametersTo(back);
        Assert.Equal(v, back);
        var fc2Bias = trainer.ExportModel().Graph.Initializer.Single(t => t.Name == "fc2.bias").ToFloatArray();
        Assert.Equal(v.AsSpan(trainer.ParameterCount - 3).ToArray(), fc2Bias);
        Assert.Throws<ArgumentException>(() => trainer.SetParameters(new float[3]));
        Assert.Throws<InvalidOperationException>(() => trainer.SetProximalAnchor(v));
    }

    [Fact]
    public void ProximalTermPullsTowardsTheAnchor()
    {
        // With zero data gradient impossible to arrange, compare two trainers: a huge μ keeps weights near the anchor.
        var model = ModelZoo.Create("logreg", [6], 3, seed: 9);
        var (x, y) = SyntheticData.Blobs(16, 6, 3, seed: 10);
        using var free = OnnxTrainer.Create(model, Small());
        using var prox = OnnxTrainer.Create(model, Small() with { ProximalMu = 5f });
        var anchor = new float[prox.ParameterCount];
        prox.CopyParametersTo(anchor);
        prox.SetProximalAnchor(anchor);
        for (var i = 0; i < 20; i++)
        {
            free.TrainStep(x, y);
            prox.TrainStep(x, y);
        }

        float Distance(OnnxTrainer t)
        {
            var w = new float[t.ParameterCount];
            t.CopyParametersTo(w);
            return System.Numerics.Tensors.TensorPrimitives.Distance<float>(w, anchor);
        }

        Assert.True(Distance(prox) < 0.5f * Distance(free), $"{Distance(prox)} vs {Distance(free)}");
    }

    [Fact]
    public void APartialLastBatchUsesItsOwnGraphOnTheSameBuffers()
    {
        using var trainer = OnnxTrainer.Create(ModelZoo.Create("mlp", [6], 3, seed: 11), Small(OptimizerKind.Adam));
        var (x, y) = SyntheticData.Blobs(21, 6, 3, seed: 12);
        trainer.TrainStep(x.AsSpan(0, 16 * 6), y.AsSpan(0, 16));
        var before = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(before);
        Assert.True(float.IsFinite(trainer.TrainStep(x.AsSpan(16 * 6), y.AsSpan(16))));
        var after = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(after);
        Assert.NotEqual(before, after);
        Assert.Equal(2, trainer.StepCount);
    }

    [Fact]
    public void ZerothOrderTrainingReducesTheLoss()
    {
        var model = ModelZoo.Create("logreg", [6], 3, seed: 13);
        var (x, y) = SyntheticData.Blobs(64, 6, 3, seed: 14);
        using var trainer = OnnxTrainer.Create(model, new TrainingOptions
        {
            BatchSize = 64,
            LearningRate = 0.05f,
            ZerothOrder = true,
            ZerothOrderDirections = 4,
            Threads = 1,
            Seed = 3,
        });
        var before = trainer.Evaluate(x, y).Loss;
        for (var i = 0; i < 150; i++)
        {
            trainer.TrainStep(x, y);
        }

        var after = trainer.Evaluate(x, y).Loss;
        Assert.True(after < 0.8 * before, $"{before} -> {after}");
    }

    [Fact]
    public void DropoutGradientIsTheMaskScaledByTheKeepProbability()
    {
        // y = Dropout(x, ratio 0.25) in training mode; d(Σ y⊙r)/dx must be r ⊙ mask / 0.75 for the same mask.
        var graph = new GraphProto { Name = "dropout" };
        var b = new GraphBuilder(graph, "t");
        graph.Input.Add(TensorInfo("x", DataType.Float, 4, 50));
        b.AddNode("Dropout", ["x", b.Constant([0.25f])], ["y", "mask"]);
        TrainingLowering.Lower(b, seed: 5);
        var opsets = new[] { new OperatorSetIdProto { Version = 17 } };
        var shapes = ValueShapes.Probe(graph, opsets, new Dictionary<string, TensorShape> { ["x"] = new(DataType.Float, [4, 50]) });
        var r = Enumerable.Range(0, 200).Select(i => (float)Math.Cos(i)).ToArray();
        var seed = b.Constant(r, 4, 50);
        var grads = Backpropagation.Run(b, graph.Node.ToList(), shapes, new Dictionary<string, string> { ["y"] = seed }, ["x"]);
        graph.Output.Add(new ValueInfoProto { Name = "mask" });
        graph.Output.Add(new ValueInfoProto { Name = grads["x"] });
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.AddRange(opsets);
        using var session = new InferenceSession(model.ToByteArray());
        using var input = OrtValue.CreateTensorValueFromMemory(new float[200], [4, 50]);
        using var results = session.Run(new RunOptions(), ["x"], [input], ["mask", grads["x"]]);
        var mask = results[0].GetTensorDataAsSpan<bool>().ToArray();
        var grad = results[1].GetTensorDataAsSpan<float>().ToArray();
        Assert.InRange(mask.Count(m => m), 110, 190);
        for (var i = 0; i < 200; i++)
        {
            Assert.Equal(mask[i] ? r[i] / 0.75f : 0f, grad[i], 5);
        }
    }

    /// <summary>
    /// A model whose managed tensors are all trained gets the flat update (one vector); a tensor the loss never
    /// reaches forces the per-tensor update. Both must give the same weights with every optimizer stage on
    /// (Adam, FedProx, clipping, weight decay), and the unreached tensor must stay as it was.
    /// </summary>
    [Fact]
    public void FlatAndPerTensorUpdatesGiveTheSameWeights()
    {
        var options = Small(OptimizerKind.Adam) with { LearningRate = 0.01f, WeightDecay = 0.01f, ClipNorm = 0.5f, ProximalMu = 0.1f };
        var flatModel = ModelZoo.Create("mlp", [1, 4, 4], 3, seed: 5);
        var perTensorModel = flatModel.Clone();
        perTensorModel.Graph.Initializer.Add(TensorProtoExtensions.Create("unused", [1f, 2f, 3f], 3));
        Assert.NotNull(TrainingGraphBuilder.Build(flatModel, options, 16).FlatParametersInput);
        Assert.Null(TrainingGraphBuilder.Build(perTensorModel, options, 16).FlatParametersInput);

        float[] Trained(ModelProto model)
        {
            using var trainer = OnnxTrainer.Create(model, options);
            var w = new float[trainer.ParameterCount];
            trainer.CopyParametersTo(w);
            trainer.SetProximalAnchor(w.Select(v => v + 0.05f).ToArray());
            var random = new Random(6);
            for (var step = 0; step < 4; step++)
            {
                var x = Enumerable.Range(0, 16 * 16).Select(_ => random.NextSingle() * 2 - 1).ToArray();
                var y = Enumerable.Range(0, 16).Select(i => (long)((i + step) % 3)).ToArray();
                Assert.True(float.IsFinite(trainer.TrainStep(x, y)));
            }

            trainer.CopyParametersTo(w);
            return w;
        }

        var flat = Trained(flatModel);
        var perTensor = Trained(perTensorModel);
        Assert.Equal([1f, 2f, 3f], perTensor[^3..]);
        var initial = new float[flat.Length];
        using (var fresh = OnnxTrainer.Create(flatModel, options))
        {
            fresh.CopyParametersTo(initial);
        }

        Assert.True(flat.Zip(initial).Count(p => p.First != p.Second) > flat.Length / 2, "training changed few weights");
        for (var i = 0; i < flat.Length; i++)
        {
            Assert.True(Math.Abs(flat[i] - perTensor[i]) <= 1e-6 + 1e-5 * Math.Abs(flat[i]), $"[{i}]: flat {flat[i]}, per tensor {perTensor[i]}");
        }
    }

    [Fact]
    public void BatchNormStatisticsDeduplicatedByTheExporterTrainAsTheirOwnTensors()
    {
        // torch 1.13 exports a fresh BatchNorm's running mean/var (zeros/ones) as Identity(bias)/Identity(weight).
        static ModelProto Model(bool aliased)
        {
            var graph = new GraphProto { Name = "bn" };
            var b = new GraphBuilder(graph, "t");
            b.AddInput("x", DataType.Float, "batch", 3, 2, 2);
            b.AddInitializer(TensorProtoExtensions.Create("scale", [1f, 1f, 1f], 3));
            b.AddInitializer(TensorProtoExtensions.Create("bias", [0f, 0f, 0f], 3));
            var fc = Enumerable.Range(0, 48).Select(i => (float)Math.Sin(i + 1) / 4).ToArray();
            b.AddInitializer(TensorProtoExtensions.Create("fc", fc, 4, 12));
            b.AddInitializer(TensorProtoExtensions.Create("fc_bias", [0.1f, -0.1f, 0.2f, 0f], 4));
            string mean, variance;
            if (aliased)
            {
                (mean, variance) = (b.Op("Identity", "bias"), b.Op("Identity", "scale"));
            }
            else
            {
                b.AddInitializer(TensorProtoExtensions.Create("mean", [0f, 0f, 0f], 3));
                b.AddInitializer(TensorProtoExtensions.Create("variance", [1f, 1f, 1f], 3));
                (mean, variance) = ("mean", "variance");
            }

            var y = b.Op("BatchNormalization", ["x", "scale", "bias", mean, variance]);
            b.AddNode("Gemm", [b.Op("Flatten", y), "fc", "fc_bias"], ["logits"], Attr("transB", 1L));
            b.AddOutput("logits", DataType.Float, "batch", 4);
            var model = new ModelProto { IrVersion = 8, Graph = graph };
            model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
            return model;
        }

        float[] Trained(ModelProto model, string initializer)
        {
            using var trainer = OnnxTrainer.Create(model, Small(OptimizerKind.Momentum));
            var random = new Random(4);
            var x = Enumerable.Range(0, 16 * 12).Select(_ => random.NextSingle() * 2 - 1).ToArray();
            var y = Enumerable.Range(0, 16).Select(i => (long)(i % 4)).ToArray();
            for (var step = 0; step < 3; step++)
            {
                trainer.TrainStep(x, y);
            }

            var exported = trainer.ExportModel().Graph;
            var bn = exported.Node.Single(n => n.OpType == "BatchNormalization");
            var name = initializer switch { "mean" => bn.Input[3], "variance" => bn.Input[4], _ => initializer };
            return exported.Initializer.Single(t => t.Name == name).ToFloatArray();
        }

        foreach (var (aliasedName, referenceName) in new[] { ("scale", "scale"), ("bias", "bias"), ("mean", "mean"), ("variance", "variance") })
        {
            var aliased = Trained(Model(aliased: true), aliasedName);
            var reference = Trained(Model(aliased: false), referenceName);
            Assert.Equal(reference.Length, aliased.Length);
            for (var i = 0; i < reference.Length; i++)
            {
                // Same arithmetic up to float rounding: the flat parameter layout differs between the two models.
                Assert.True(Math.Abs(reference[i] - aliased[i]) <= 1e-6 + 1e-4 * Math.Abs(reference[i]),
                    $"{aliasedName}[{i}]: {aliased[i]} vs separate initializers {reference[i]}");
            }
        }

        // The statistics moved away from the trained scale and bias: they really are separate tensors.
        Assert.NotEqual(Trained(Model(aliased: true), "scale"), Trained(Model(aliased: true), "variance"));
        Assert.NotEqual(Trained(Model(aliased: true), "bias"), Trained(Model(aliased: true), "mean"));
    }
}
