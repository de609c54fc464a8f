using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Training.Autodiff;
using FedEdge.Training.Engine;
using FedEdge.Training.Zoo;
using static FedEdge.Onnx.GraphBuilder;
using DataType = FedEdge.Onnx.Proto.TensorProto.Types.DataType;

namespace FedEdge.Training.Tests;

/// <summary>
/// Batches split across threads (<see cref="TrainingOptions.BatchSplit"/>): each shard's gradient graph runs
/// on its own thread and one update graph sums them. The result must be the single graph's step (float summation
/// order aside), and models whose samples interact must keep the single graph.
/// </summary>
public sealed class SplitBatchTests
{
    public static TheoryData<string, OptimizerKind, int, int, LossKind> Cases => new()
    {
        { "cnn", OptimizerKind.Momentum, 32, 2, LossKind.CrossEntropy },
        { "cnn", OptimizerKind.Sgd, 30, 2, LossKind.MeanSquaredError },
        { "mlp", OptimizerKind.Adam, 25, 3, LossKind.CrossEntropy }, // uneven shards: 9, 8, 8
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SplitBatchesTrainLikeTheSingleGraph(string zoo, OptimizerKind optimizer, int batch, int threads, LossKind loss)
    {
        var model = ModelZoo.Create(zoo, [1, 16, 16], classes: 4, seed: 3);
        var options = new TrainingOptions
        {
            BatchSize = batch,
            LearningRate = optimizer == OptimizerKind.Adam ? 0.01f : 0.1f,
            Optimizer = optimizer,
            Loss = loss,
            Threads = threads,
            BatchSplit = BatchSplitMode.Always,
            // Every update stage on with Adam: FedProx, clipping (active: the norm exceeds 0.5), weight decay.
            WeightDecay = optimizer == OptimizerKind.Adam ? 0.01f : 0,
            ClipNorm = optimizer == OptimizerKind.Adam ? 0.5f : 0,
            ProximalMu = optimizer == OptimizerKind.Adam ? 0.1f : 0,
        };
        var (x, y) = SyntheticData.Blobs(batch * 4, 256, 4, seed: 8);
        using var split = OnnxTrainer.Create(model, options);
        using var single = OnnxTrainer.Create(model, options with { BatchSplit = BatchSplitMode.Never });
        Assert.Equal(threads, split.ShardsFor(batch));
        Assert.Equal(1, single.ShardsFor(batch));
        var initial = new float[split.ParameterCount];
        split.CopyParametersTo(initial);
        if (options.ProximalMu > 0)
        {
            var anchor = initial.Select(v => v + 0.05f).ToArray();
            split.SetProximalAnchor(anchor);
            single.SetProximalAnchor(anchor);
        }

        for (var step = 0; step < 4; step++)
        {
            var features = x.AsSpan(step * batch * 256, batch * 256);
            var labels = y.AsSpan(step * batch, batch);
            var a = split.TrainStep(features, labels);
            var b = single.TrainStep(features, labels);
            Assert.True(Math.Abs(a - b) <= 1e-5 * Math.Abs(b), $"step {step}: loss split {a}, single {b}");
        }

        var w = new float[split.ParameterCount];
        var reference = new float[single.ParameterCount];
        split.CopyParametersTo(w);
        single.CopyParametersTo(reference);
        // Training must move the weights far beyond the comparison tolerance, or the comparison would prove nothing.
        var moved = w.Zip(initial).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(moved > 1e-3, $"training moved the weights by at most {moved}");
        for (var i = 0; i < w.Length; i++)
        {
            Assert.True(Math.Abs(w[i] - reference[i]) <= 1e-6 + 1e-5 * Math.Abs(reference[i]), $"[{i}]: split {w[i]}, single {reference[i]}");
        }
    }

    [Fact]
    public void ModelsWhoseSamplesInteractKeepTheSingleGraph()
    {
        var options = new TrainingOptions { BatchSize = 16, LearningRate = 0.1f, Threads = 2, BatchSplit = BatchSplitMode.Always };
        Assert.True(TrainingGraphBuilder.SamplesAreIndependent(ModelZoo.Create("cnn", [1, 16, 16], 4, seed: 1), options));
        Assert.True(TrainingGraphBuilder.SamplesAreIndependent(ModelZoo.Create("mlp", [6], 3, seed: 1), options));

        // logits = h − mean over the batch of h: every sample's loss depends on the others.
        var graph = new GraphProto { Name = "centred" };
        var b = new GraphBuilder(graph, "t");
        b.AddInput("x", DataType.Float, "batch", 6);
        b.AddInitializer(TensorProtoExtensions.Create("w", Enumerable.Range(0, 18).Select(i => (float)Math.Sin(i + 1)).ToArray(), 3, 6));
        var h = b.Op("Gemm", ["x", "w"], Attr("transB", 1L));
        b.AddNode("Sub", [h, b.Op("ReduceMean", [h], Attr("axes", new long[] { 0 }), Attr("keepdims", 1L))], ["logits"]);
        b.AddOutput("logits", DataType.Float, "batch", 3);
        var centred = new ModelProto { IrVersion = 8, Graph = graph };
        centred.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        Assert.False(TrainingGraphBuilder.SamplesAreIndependent(centred, options));

        // A graph written for one batch size (a Reshape to [16, 6]) cannot be probed with other batches: it runs as it is.
        var fixedGraph = new GraphProto { Name = "fixed" };
        var f = new GraphBuilder(fixedGraph, "t");
        f.AddInput("x", DataType.Float, 16, 6);
        f.AddInitializer(TensorProtoExtensions.Create("w", Enumerable.Range(0, 18).Select(i => (float)Math.Cos(i + 1)).ToArray(), 3, 6));
        f.AddNode("Gemm", [f.Op("Reshape", "x", f.Ints(16, 6)), "w"], ["logits"], Attr("transB", 1L));
        f.AddOutput("logits", DataType.Float, 16, 3);
        var fixedBatch = new ModelProto { IrVersion = 8, Graph = fixedGraph };
        fixedBatch.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        Assert.False(TrainingGraphBuilder.SamplesAreIndependent(fixedBatch, options));

        var (x, y) = SyntheticData.Blobs(16, 6, 3, seed: 2);
        foreach (var model in new[] { centred, fixedBatch })
        {
            using var trainer = OnnxTrainer.Create(model, options);
            Assert.Equal(1, trainer.ShardsFor(16));
            Assert.True(float.IsFinite(trainer.TrainStep(x, y)));
        }
    }

    [Fact]
    public void AutoSplitsConvolutionalBatchesButNotSmallDenseOnes()
    {
        var options = new TrainingOptions { BatchSize = 64, Threads = 2 };
        Assert.Equal(BatchSplitMode.Auto, options.BatchSplit);
        using (var cnn = OnnxTrainer.Create(ModelZoo.Create("cnn", [1, 28, 28], 10, seed: 0), options))
        {
            Assert.Equal(2, cnn.ShardsFor(64));
            Assert.Equal(1, cnn.ShardsFor(12)); // shards of 6 samples: too small
        }

        using (var mlp = OnnxTrainer.Create(ModelZoo.Create("mlp", [1, 28, 28], 10, seed: 0), options))
        {
            Assert.Equal(1, mlp.ShardsFor(64)); // ~1,000 forward values per sample: ONNX Runtime's GEMM threads do better
        }

        using var single = OnnxTrainer.Create(ModelZoo.Create("cnn", [1, 28, 28], 10, seed: 0), options with { Threads = 1 });
        Assert.Equal(1, single.ShardsFor(64));
    }

    [Fact]
    public void ShardThreadsRunEveryIndexAndReportFailures()
    {
        var counts = new int[3];
        var fail = -1;
        using var threads = new ShardThreads(3, i =>
        {
            Interlocked.Increment(ref counts[i]);
            if (i == Volatile.Read(ref fail))
            {
                throw new InvalidOperationException($"shard {i} failed");
            }
        }, "test shard");
        for (var run = 0; run < 200; run++)
        {
            threads.Run();
        }

        Assert.Equal([200, 200, 200], counts);
        Volatile.Write(ref fail, 2);
        Assert.Equal("shard 2 failed", Assert.Throws<InvalidOperationException>(threads.Run).Message);
        Volatile.Write(ref fail, -1);
        // The path under test: a run that must wake workers which stopped spinning and blocked.
        Assert.True(SpinWait.SpinUntil(() => threads.BlockedWorkers == 2, TimeSpan.FromSeconds(10)), $"{threads.BlockedWorkers} of 2 workers blocked");
        threads.Run();
        Assert.Equal([202, 202, 202], counts);
    }
}
