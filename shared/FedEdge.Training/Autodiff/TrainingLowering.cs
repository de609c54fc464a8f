using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using static FedEdge.Onnx.GraphBuilder;

namespace FedEdge.Training.Autodiff;

/// <summary>
/// Rewrites inference-mode nodes into their training-mode form, using only ops that have gradient
/// rules and run in the ONNX Runtime inference build (which lacks BatchNormalization's training
/// mode): BatchNormalization → batch statistics, Dropout → random mask, MaxPool with overlapping windows → with Indices, Relu → MaxPool → MaxPool → Relu.
/// </summary>
internal static class TrainingLowering
{
    /// <summary>A buffer (e.g. BatchNorm running mean) and the graph value holding its updated content.</summary>
    public sealed record BufferUpdate(string Buffer, string Updated);

    public static List<BufferUpdate> Lower(GraphBuilder b, int seed)
    {
        var graph = b.Graph;
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var original = graph.Node.ToList();
        graph.Node.Clear();
        var updates = new List<BufferUpdate>();
        var dropoutIndex = 0;
        var deferredRelu = PoolableRelus(graph, original);
        foreach (var node in original)
        {
            switch (node.OpType)
            {
                case "Relu" when deferredRelu.ContainsKey(node.Output[0]):
                    break; // emitted after its MaxPool below
                case "MaxPool" when deferredRelu.TryGetValue(node.Input[0], out var relu):
                    {
                        // MaxPool(Relu(x)) = Relu(MaxPool(x)) exactly (ReLU is monotone): pooling first runs the
                        // ReLU and its gradient on a quarter of the elements for 2×2 pools, and gradients agree
                        // (where the pooled maximum is ≤ 0 both give zero).
                        var pooled = b.UniqueName("maxpool_pre_relu");
                        var swapped = node.Clone();
                        swapped.Input[0] = relu.Input[0];
                        swapped.Output[0] = pooled;
                        AddIndices(b, swapped);
                        graph.Node.Add(swapped);
                        b.AddNode("Relu", [pooled], [node.Output[0]]);
                        break;
                    }

                case "BatchNormalization" when string.IsNullOrEmpty(node.Domain):
                    LowerBatchNorm(b, node, initializers, updates);
                    break;
                case "Dropout" when string.IsNullOrEmpty(node.Domain):
                    LowerDropout(b, node, initializers, seed + dropoutIndex++);
                    break;
                case "MaxPool":
                    AddIndices(b, node);
                    graph.Node.Add(node);
                    break;
                default:
                    graph.Node.Add(node);
                    break;
            }
        }

        return updates;
    }

    /// <summary>A MaxPool whose windows overlap or do not tile the input routes its gradient through its Indices output.</summary>
    private static void AddIndices(GraphBuilder b, NodeProto maxPool)
    {
        if (ConvolutionRules.IsTiledMaxPool(maxPool) && (maxPool.Output.Count < 2 || maxPool.Output[1].Length == 0))
        {
            return;
        }

        if (maxPool.Output.Count < 2)
        {
            maxPool.Output.Add(b.UniqueName("maxpool_indices"));
        }
        else if (maxPool.Output[1].Length == 0)
        {
            maxPool.Output[1] = b.UniqueName("maxpool_indices");
        }
    }

    /// <summary>Relu nodes whose output feeds only one MaxPool (and is no graph output), keyed by that output.</summary>
    private static Dictionary<string, NodeProto> PoolableRelus(GraphProto graph, List<NodeProto> nodes)
    {
        var uses = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var input in nodes.SelectMany(n => n.Input))
        {
            uses[input] = uses.GetValueOrDefault(input) + 1;
        }

        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var relus = nodes.Where(n => n.OpType == "Relu" && string.IsNullOrEmpty(n.Domain) && n.Output.Count == 1)
            .ToDictionary(n => n.Output[0], StringComparer.Ordinal);
        var result = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var pool in nodes.Where(n => n.OpType == "MaxPool" && string.IsNullOrEmpty(n.Domain)))
        {
            var x = pool.Input[0];
            if (relus.TryGetValue(x, out var relu) && uses.GetValueOrDefault(x) == 1 && !outputs.Contains(x))
            {
                result[x] = relu;
            }
        }

        return result;
    }

    private static TensorProto.Types.DataType TypeOf(string value, Dictionary<string, TensorProto> initializers, GraphProto? graph = null) =>
        initializers.TryGetValue(value, out var t) ? t.ElementType()
        : graph?.Input.FirstOrDefault(i => i.Name == value)?.Type?.TensorType is { } tt ? (TensorProto.Types.DataType)tt.ElemType
        : TensorProto.Types.DataType.Float;

    private static void LowerBatchNorm(GraphBuilder b, NodeProto n, Dictionary<string, TensorProto> initializers, List<BufferUpdate> updates)
    {
        var (x, scale, bias, mean, variance) = (n.Input[0], n.Input[1], n.Input[2], n.Input[3], n.Input[4]);
        var type = TypeOf(scale, initializers, b.Graph);
        var eps = n.GetFloat("epsilon", 1e-5f);
        var momentum = n.GetFloat("momentum", 0.9f);

        // Statistics over every axis but the channel axis (1): view X as [N, C, rest] (Reshape's 0 keeps a dimension),
        // which works for any rank without knowing shapes before the probe.
        var view = b.Op("Reshape", x, b.Ints(0, 0, -1));
        var mu = b.Op("ReduceMean", [view], Attr("axes", new long[] { 0, 2 }), Attr("keepdims", 1L));
        var centered = b.Op("Sub", view, mu);
        var varBatch = b.Op("ReduceMean", [b.Op("Mul", centered, centered)], Attr("axes", new long[] { 0, 2 }), Attr("keepdims", 1L));
        var invStd = b.Op("Reciprocal", b.Op("Sqrt", b.Op("Add", varBatch, b.Scalar(eps, type))));
        var normalized = b.Op("Mul", centered, invStd);
        var affine = b.Op("Add", b.Op("Mul", normalized, b.Op("Reshape", scale, b.Ints(1, -1, 1))), b.Op("Reshape", bias, b.Ints(1, -1, 1)));
        b.AddNode("Reshape", [affine, b.Op("Shape", x)], [n.Output[0]]);

        // Running statistics as ONNX defines them: r ← r·momentum + batch·(1 − momentum); the variance
        // is the unbiased estimate (× m/(m−1), m = elements per channel), as PyTorch keeps it.
        var channels = b.Op("Cast", [b.Op("Gather", [b.Op("Shape", x), b.Constant([1L])], Attr("axis", 0L))], Attr("to", (long)type));
        var perChannel = b.Op("Div", b.Op("Cast", [b.Op("Size", x)], Attr("to", (long)type)), channels);
        var unbias = b.Op("Div", perChannel, b.Op("Sub", perChannel, b.Scalar(1, type)));
        var newMean = b.Op("Add", b.Op("Mul", mean, b.Scalar(momentum, type)),
            b.Op("Mul", b.Op("Reshape", mu, b.Ints(-1)), b.Scalar(1 - momentum, type)));
        var newVar = b.Op("Add", b.Op("Mul", variance, b.Scalar(momentum, type)),
            b.Op("Mul", b.Op("Mul", b.Op("Reshape", varBatch, b.Ints(-1)), unbias), b.Scalar(1 - momentum, type)));
        updates.Add(new BufferUpdate(mean, newMean));
        updates.Add(new BufferUpdate(variance, newVar));
    }

    private static void LowerDropout(GraphBuilder b, NodeProto n, Dictionary<string, TensorProto> initializers, int seed)
    {
        var x = n.Input[0];
        var ratio = 0.5;
        if (n.Input.Count > 1 && n.Input[1].Length > 0)
        {
            var r = initializers.TryGetValue(n.Input[1], out var t) ? t
                : b.Graph.Node.FirstOrDefault(c => c.OpType == "Constant" && c.Output[0] == n.Input[1])?.Find("value")?.T;
            ratio = r is null ? throw new UnsupportedOperatorException(n.OpType, n.Name, "the ratio must be a constant.")
                : r.ElementType() == TensorProto.Types.DataType.Double ? r.ToDoubleArray()[0] : r.ToFloatArray()[0];
        }

        var type = TensorProto.Types.DataType.Float;
        if (ratio <= 0)
        {
            b.AddNode("Identity", [x], [n.Output[0]]);
            if (n.Output.Count > 1 && n.Output[1].Length > 0)
            {
                b.AddNode("Cast", [b.Op("ConstantOfShape", b.Op("Shape", x))], [n.Output[1]], Attr("to", (long)TensorProto.Types.DataType.Bool));
            }

            return;
        }

        // Inverted dropout: keep with probability 1 − p and scale kept values by 1/(1 − p).
        var uniform = b.Op("RandomUniformLike", [x], Attr("seed", (float)seed));
        var mask = b.Op("Less", uniform, b.Scalar(1 - ratio, type));
        var kept = b.Op("Where", mask, x, b.Scalar(0, type));
        b.AddNode("Mul", [kept, b.Scalar(1 / (1 - ratio), type)], [n.Output[0]]);
        if (n.Output.Count > 1 && n.Output[1].Length > 0)
        {
            b.AddNode("Identity", [mask], [n.Output[1]]);
        }
    }
}
