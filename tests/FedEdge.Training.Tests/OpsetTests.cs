using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using static FedEdge.Onnx.GraphBuilder;
using DataType = FedEdge.Onnx.Proto.TensorProto.Types.DataType;

namespace FedEdge.Training.Tests;

/// <summary>
/// Opsets 18–21 (issue 16): the signatures that changed after opset 17 — Reduce ops with axes as an input, Split with
/// num_outputs, BatchNormalization — train exactly like the opset-17 twin of the same model. (torch 1.13 exports at
/// most opset 17, so these models are written here; opsets 13–17 are exported by PyTorch in the parity tests.)
/// </summary>
public class OpsetTests
{

    private static ModelProto Model(long opset)
    {
        var graph = new GraphProto { Name = "opsets" };
        var b = new GraphBuilder(graph, "t");
        b.AddInput("x", DataType.Float, "batch", 2, 5, 5);
        b.AddInitializer(TensorProtoExtensions.Create("w", [.. Enumerable.Range(0, 4 * 2 * 9).Select(i => (float)Math.Sin(i) / 3)], 4, 2, 3, 3));
        b.AddInitializer(TensorProtoExtensions.Create("scale", [1f, 0.9f, 1.1f, 1.2f], 4));
        b.AddInitializer(TensorProtoExtensions.Create("bias", [0f, 0.1f, -0.1f, 0.2f], 4));
        b.AddInitializer(TensorProtoExtensions.Create("mean", [0.1f, 0f, 0f, -0.1f], 4));
        b.AddInitializer(TensorProtoExtensions.Create("variance", [1f, 1.5f, 0.8f, 1f], 4));
        b.AddInitializer(TensorProtoExtensions.Create("fc", [.. Enumerable.Range(0, 3 * 4).Select(i => (float)Math.Cos(i) / 2)], 3, 4));
        var conv = b.Op("Conv", ["x", "w"], Attr("pads", new long[] { 1, 1, 1, 1 }));
        var normalized = b.Op("Relu", b.Op("BatchNormalization", [conv, "scale", "bias", "mean", "variance"], Attr("momentum", 0.8f)));
        string Reduce(string op, string value, long[] axes) => opset >= 18
            ? b.Op(op, [value, b.Ints(axes)], Attr("keepdims", 0L))
            : b.Op(op, [value], Attr("axes", axes), Attr("keepdims", 0L));
        var pooled = Reduce("ReduceMean", normalized, [2, 3]); // [N, 4]
        var halves = opset >= 18
            ? b.Node("Split", [pooled], 2, Attr("axis", 1L), Attr("num_outputs", 2L))
            : b.Node("Split", [pooled], 2, Attr("axis", 1L));
        var total = b.Op("ReduceSum", [normalized, b.Ints(2, 3)], Attr("keepdims", 0L)); // axes input since opset 13
        var features = b.Op("Concat", [b.Op("Mul", halves[0], halves[1]), halves[1]], Attr("axis", 1L));
        b.AddNode("Gemm", [b.Op("Add", features, b.Op("Mul", total, b.Scalar(0.1, DataType.Float))), "fc"], ["logits"], Attr("transB", 1L));
        b.AddOutput("logits", DataType.Float, "batch", 3);
        var model = new ModelProto { IrVersion = 10, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = opset });
        return model;
    }

    private static float[] Train(ModelProto model, out float[] losses)
    {
        var options = new TrainingOptions { BatchSize = 6, LearningRate = 0.1f, Optimizer = OptimizerKind.Momentum, Momentum = 0.9f, Threads = 1 };
        using var trainer = OnnxTrainer.Create(model, options);
        var random = new Random(5);
        var x = Enumerable.Range(0, 6 * 50).Select(_ => random.NextSingle() * 2 - 1).ToArray();
        var y = Enumerable.Range(0, 6).Select(i => (long)(i % 3)).ToArray();
        losses = [.. Enumerable.Range(0, 3).Select(_ => trainer.TrainStep(x, y))];
        var parameters = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(parameters);
        Assert.True(double.IsFinite(trainer.Evaluate(x, y).Loss));
        return parameters;
    }

    [Theory]
    [InlineData(18)]
    [InlineData(19)]
    [InlineData(20)]
    [InlineData(21)]
    public void LaterOpsetsTrainLikeTheirOpset17Twin(long opset)
    {
        var reference = Train(Model(17), out var referenceLosses);
        var later = Train(Model(opset), out var laterLosses);
        Assert.Equal(referenceLosses, laterLosses);
        Assert.Equal(reference, later);
        var initial = new float[reference.Length];
        new[] { "w", "scale", "bias", "mean", "variance", "fc" }.Aggregate(0, (offset, name) =>
        {
            var t = Model(17).Graph.Initializer.Single(i => i.Name == name).ToFloatArray();
            t.CopyTo(initial, offset);
            return offset + t.Length;
        });
        Assert.True(reference.Zip(initial).Count(p => p.First != p.Second) > reference.Length / 2, "training changed few parameters");
    }

    [Fact]
    public void AnAxesInputComputedAtRunTimeIsRejectedByName()
    {
        var model = Model(18);
        var reduce = model.Graph.Node.First(n => n.OpType == "ReduceMean");
        var b = new GraphBuilder(model.Graph, "u");
        var computed = b.Op("Identity", reduce.Input[1]);
        model.Graph.Node.Remove(model.Graph.Node.Single(n => n.Output.Contains(computed)));
        model.Graph.Node.Insert(model.Graph.Node.IndexOf(reduce), new NodeProto { OpType = "Identity", Input = { reduce.Input[1] }, Output = { computed } });
        reduce.Input[1] = computed;
        reduce.Name = "pool";
        var e = Assert.Throws<OnnxFormatException>(() => OnnxTrainer.Create(model, new TrainingOptions { BatchSize = 2 }));
        Assert.Contains("'pool'", e.Message);
        Assert.Contains("constant", e.Message);
    }

    [Fact]
    public void OpsetsAbove21AreRejected()
    {
        var model = Model(21);
        model.OpsetImport[0].Version = 22;
        var e = Assert.Throws<OnnxFormatException>(() => OnnxTrainer.Create(model, new TrainingOptions { BatchSize = 2 }));
        Assert.Contains("opset 22", e.Message);
    }
}
