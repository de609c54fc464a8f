using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using static FedEdge.Onnx.GraphBuilder;

namespace FedEdge.Training.Autodiff;

/// <summary>
/// A reverse-mode rule: given the node, the gradients of its outputs (null where none flows) and
/// which inputs need a gradient, emits ONNX nodes computing the input gradients (null where none).
/// Every returned gradient has exactly the static shape of its input.
/// </summary>
internal delegate string?[] GradientRule(NodeProto node, string?[] dOut, bool[] need, GradientContext c);

/// <summary>Gradient rules for the ONNX operators FedEdge differentiates (opsets 13–17).</summary>
internal static class GradientRules
{
    /// <summary>Ops whose outputs carry no gradient (shape arithmetic, comparisons, sampling, rounding).</summary>
    public static readonly HashSet<string> NonDifferentiable = new(StringComparer.Ordinal)
    {
        "Shape", "Size", "Constant", "ConstantOfShape", "Range", "Equal", "Less", "LessOrEqual", "Greater",
        "GreaterOrEqual", "Not", "And", "Or", "Xor", "NonZero", "ArgMax", "ArgMin", "RandomUniformLike",
        "RandomNormalLike", "RandomUniform", "RandomNormal", "Floor", "Ceil", "Round", "Sign", "OneHot", "IsNaN",
        "IsInf", "EyeLike", "TopK",
    };

    private static readonly Dictionary<string, GradientRule> Rules = new(StringComparer.Ordinal)
    {
        ["Identity"] = (n, d, need, c) => [d[0]],
        ["Reshape"] = ReshapeBack,
        ["Flatten"] = ReshapeBack,
        ["Squeeze"] = ReshapeBack,
        ["Unsqueeze"] = ReshapeBack,
        ["Add"] = (n, d, need, c) => [Broadcast(c, n, d[0]!, 0), Broadcast(c, n, d[0]!, 1)],
        ["Sub"] = (n, d, need, c) => [Broadcast(c, n, d[0]!, 0), need[1] ? c.B.Op("Neg", Broadcast(c, n, d[0]!, 1)!) : null],
        ["Sum"] = (n, d, need, c) => [.. n.Input.Select((_, i) => need[i] ? Broadcast(c, n, d[0]!, i) : null)],
        ["Mul"] = Mul,
        ["Div"] = Div,
        ["Pow"] = Pow,
        ["Neg"] = (n, d, need, c) => [c.B.Op("Neg", d[0]!)],
        ["Relu"] = (n, d, need, c) => [c.B.Op("Where", c.B.Op("Greater", n.Input[0], c.Scalar(0, n.Input[0])), d[0]!, c.Scalar(0, n.Input[0]))],
        ["LeakyRelu"] = LeakyRelu,
        ["Sigmoid"] = (n, d, need, c) => [c.B.Op("Mul", d[0]!, c.B.Op("Mul", n.Output[0], c.B.Op("Sub", c.Scalar(1, n.Output[0]), n.Output[0])))],
        ["Tanh"] = (n, d, need, c) => [c.B.Op("Mul", d[0]!, c.B.Op("Sub", c.Scalar(1, n.Output[0]), c.B.Op("Mul", n.Output[0], n.Output[0])))],
        ["Exp"] = (n, d, need, c) => [c.B.Op("Mul", d[0]!, n.Output[0])],
        ["Log"] = (n, d, need, c) => [c.B.Op("Div", d[0]!, n.Input[0])],
        ["Sqrt"] = (n, d, need, c) => [c.B.Op("Div", d[0]!, c.B.Op("Mul", c.Scalar(2, n.Output[0]), n.Output[0]))],
        ["Reciprocal"] = (n, d, need, c) => [c.B.Op("Neg", c.B.Op("Mul", d[0]!, c.B.Op("Mul", n.Output[0], n.Output[0])))],
        ["Abs"] = (n, d, need, c) => [c.B.Op("Mul", d[0]!, c.B.Op("Sign", n.Input[0]))],
        ["Erf"] = (n, d, need, c) => [c.B.Op("Mul", d[0]!, c.B.Op("Mul", c.Scalar(2 / Math.Sqrt(Math.PI), n.Input[0]),
            c.B.Op("Exp", c.B.Op("Neg", c.B.Op("Mul", n.Input[0], n.Input[0])))))],
        ["Clip"] = (n, d, need, c) => [c.B.Op("Where", c.B.Op("Equal", n.Output[0], n.Input[0]), d[0]!, c.Scalar(0, n.Input[0])), null, null],
        ["HardSigmoid"] = HardSigmoid,
        ["HardSwish"] = HardSwish,
        ["Where"] = Where,
        ["Cast"] = (n, d, need, c) => [c.IsFloating(n.Input[0]) ? c.B.Op("Cast", [d[0]!], Attr("to", (long)c.Type(n.Input[0]))) : null],
        ["Softmax"] = Softmax,
        ["LogSoftmax"] = LogSoftmax,
        ["Transpose"] = Transpose,
        ["Concat"] = Concat,
        ["Split"] = Split,
        ["Slice"] = (n, d, need, c) => [c.IndexMapGradient(n, d[0]!), .. new string?[n.Input.Count - 1]],
        ["Gather"] = (n, d, need, c) => [c.IndexMapGradient(n, d[0]!), null],
        ["Expand"] = (n, d, need, c) => [c.ReduceTo(d[0]!, c.Dims(n.Output[0]), c.Dims(n.Input[0])), null],
        ["Tile"] = (n, d, need, c) => [c.IndexMapGradient(n, d[0]!), null],
        ["GatherElements"] = GatherElements,
        ["Pad"] = Pad,
        ["ReduceSum"] = ReduceBack,
        ["ReduceMean"] = ReduceBack,
        ["Gemm"] = Gemm,
        ["MatMul"] = MatMul,
        ["Conv"] = ConvolutionRules.Conv,
        ["MaxPool"] = ConvolutionRules.MaxPool,
        ["AveragePool"] = ConvolutionRules.AveragePool,
        ["GlobalAveragePool"] = ConvolutionRules.GlobalAveragePool,
    };

    public static IEnumerable<string> SupportedOps => Rules.Keys.Concat(NonDifferentiable);

    public static bool TryGet(string opType, out GradientRule rule) => Rules.TryGetValue(opType, out rule!);

    private static string?[] ReshapeBack(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var result = new string?[n.Input.Count];
        result[0] = c.Reshape(d[0]!, c.Dims(n.Input[0]));
        return result;
    }

    /// <summary>Gradient of a broadcasting elementwise op's output w.r.t. input i when ∂y/∂x_i = 1.</summary>
    private static string? Broadcast(GradientContext c, NodeProto n, string dY, int i) =>
        i < n.Input.Count && c.IsFloating(n.Input[i]) ? c.ReduceTo(dY, c.Dims(n.Output[0]), c.Dims(n.Input[i])) : null;

    private static string? Scaled(GradientContext c, NodeProto n, string product, bool need, int i) =>
        need ? c.ReduceTo(product, c.Dims(n.Output[0]), c.Dims(n.Input[i])) : null;

    private static string?[] Mul(NodeProto n, string?[] d, bool[] need, GradientContext c) =>
    [
        need[0] ? Scaled(c, n, c.B.Op("Mul", d[0]!, n.Input[1]), true, 0) : null,
        need[1] ? Scaled(c, n, c.B.Op("Mul", d[0]!, n.Input[0]), true, 1) : null,
    ];

    private static string?[] Div(NodeProto n, string?[] d, bool[] need, GradientContext c) =>
    [
        need[0] ? Scaled(c, n, c.B.Op("Div", d[0]!, n.Input[1]), true, 0) : null,
        // ∂(a/b)/∂b = −y/b
        need[1] ? Scaled(c, n, c.B.Op("Neg", c.B.Op("Mul", d[0]!, c.B.Op("Div", n.Output[0], n.Input[1]))), true, 1) : null,
    ];

    private static string?[] Pow(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var (x, e, y) = (n.Input[0], n.Input[1], n.Output[0]);
        string? dx = null, de = null;
        if (need[0])
        {
            var eMinus1 = c.B.Op("Sub", e, c.B.Scalar(1, c.Type(e)));
            var local = c.B.Op("Mul", e, c.B.Op("Pow", x, eMinus1));
            if (c.Type(e) != c.Type(x))
            {
                local = c.B.Op("Cast", [local], Attr("to", (long)c.Type(x)));
            }

            dx = Scaled(c, n, c.B.Op("Mul", d[0]!, local), true, 0);
        }

        if (need[1])
        {
            de = Scaled(c, n, c.B.Op("Mul", d[0]!, c.B.Op("Mul", y, c.B.Op("Log", x))), true, 1);
        }

        return [dx, de];
    }

    private static string?[] LeakyRelu(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var alpha = n.GetFloat("alpha", 0.01f);
        var x = n.Input[0];
        var scaled = c.B.Op("Mul", d[0]!, c.Scalar(alpha, x));
        return [c.B.Op("Where", c.B.Op("Greater", x, c.Scalar(0, x)), d[0]!, scaled)];
    }

    /// <summary>
    /// y = max(0, min(1, αx + β)): dx = α·dy strictly inside (−β/α, (1 − β)/α), as PyTorch's hardsigmoid_backward
    /// (the bounds are compared on x, not on αx + β, so rounding cannot move them).
    /// </summary>
    private static string?[] HardSigmoid(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        double alpha = n.GetFloat("alpha", 0.2f), beta = n.GetFloat("beta", 0.5f);
        var x = n.Input[0];
        var inside = c.B.Op("And", c.B.Op("Greater", x, c.Scalar(-beta / alpha, x)), c.B.Op("Less", x, c.Scalar((1 - beta) / alpha, x)));
        return [c.B.Op("Where", inside, c.B.Op("Mul", d[0]!, c.Scalar(alpha, x)), c.Scalar(0, x))];
    }

    /// <summary>y = x·max(0, min(1, x/6 + 1/2)): dx = 0 below −3, dy·(x/3 + 1/2) on [−3, 3], dy above, as PyTorch's hardswish_backward.</summary>
    private static string?[] HardSwish(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var x = n.Input[0];
        var slope = c.B.Op("Add", c.B.Op("Mul", x, c.Scalar(1.0 / 3, x)), c.Scalar(0.5, x));
        var inner = c.B.Op("Where", c.B.Op("LessOrEqual", x, c.Scalar(3, x)), c.B.Op("Mul", d[0]!, slope), d[0]!);
        return [c.B.Op("Where", c.B.Op("Less", x, c.Scalar(-3, x)), c.Scalar(0, x), inner)];
    }

    private static string?[] Where(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var zero = c.Scalar(0, n.Output[0]);
        return
        [
            null,
            need[1] ? Scaled(c, n, c.B.Op("Where", n.Input[0], d[0]!, zero), true, 1) : null,
            need[2] ? Scaled(c, n, c.B.Op("Where", n.Input[0], zero, d[0]!), true, 2) : null,
        ];
    }

    private static long Axis(NodeProto n, GradientContext c, long fallback)
    {
        var axis = n.GetInt("axis", fallback);
        return axis < 0 ? axis + c.Dims(n.Input[0]).Length : axis;
    }

    private static string?[] Softmax(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        // dx = y ⊙ (dy − Σ_axis dy ⊙ y)
        var y = n.Output[0];
        var axis = c.B.Ints(Axis(n, c, -1));
        var dot = c.B.Op("ReduceSum", [c.B.Op("Mul", d[0]!, y), axis], Attr("keepdims", 1L));
        return [c.B.Op("Mul", y, c.B.Op("Sub", d[0]!, dot))];
    }

    private static string?[] LogSoftmax(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        // dx = dy − softmax(x) ⊙ Σ_axis dy
        var axis = c.B.Ints(Axis(n, c, -1));
        var total = c.B.Op("ReduceSum", [d[0]!, axis], Attr("keepdims", 1L));
        return [c.B.Op("Sub", d[0]!, c.B.Op("Mul", c.B.Op("Exp", n.Output[0]), total))];
    }

    private static string?[] Transpose(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var rank = c.Dims(n.Input[0]).Length;
        var perm = n.GetInts("perm") ?? Enumerable.Range(0, rank).Reverse().Select(i => (long)i).ToArray();
        var inverse = new long[rank];
        for (var i = 0; i < rank; i++)
        {
            inverse[perm[i]] = i;
        }

        return [c.B.Op("Transpose", [d[0]!], Attr("perm", inverse))];
    }

    private static string?[] Concat(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var axis = Axis(n, c, 0);
        var sizes = n.Input.Select(i => c.Dims(i)[axis]).ToArray();
        var parts = c.B.Node("Split", [d[0]!, c.B.Ints(sizes)], n.Input.Count, Attr("axis", axis));
        return [.. parts.Select((p, i) => need[i] ? p : null)];
    }

    private static string?[] Split(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var axis = Axis(n, c, 0);
        var parts = new string[n.Output.Count];
        for (var i = 0; i < parts.Length; i++)
        {
            parts[i] = d[i] ?? c.Reshape(c.ZerosFlat(c.Dims(n.Output[i]).Aggregate(1L, (a, b) => a * b)), c.Dims(n.Output[i]));
        }

        var result = new string?[n.Input.Count];
        result[0] = c.B.Op("Concat", parts, Attr("axis", axis));
        return result;
    }

    private static string?[] GatherElements(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var x = n.Input[0];
        var zeros = c.Reshape(c.ZerosFlat(c.Dims(x).Aggregate(1L, (a, b) => a * b)), c.Dims(x));
        return [c.B.Op("ScatterElements", [zeros, n.Input[1], d[0]!], Attr("axis", Axis(n, c, 0)), Attr("reduction", "add")), null];
    }

    private static string?[] Pad(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var mode = n.GetString("mode", "constant");
        if (mode != "constant")
        {
            throw new UnsupportedOperatorException(n.OpType, n.Name, $"only mode 'constant' has a gradient rule (got '{mode}').");
        }

        if (n.Input.Count > 3 && n.Input[3].Length > 0)
        {
            throw new UnsupportedOperatorException(n.OpType, n.Name, "the axes input is not supported.");
        }

        // dx = dy[pad_begin : pad_begin + shape(x)] along every axis (pads is a run-time tensor).
        var dims = c.Dims(n.Input[0]);
        var rank = dims.Length;
        var begins = c.B.Op("Slice", n.Input[1], c.B.Ints(0), c.B.Ints(rank));
        var ends = c.B.Op("Add", begins, c.B.Ints(dims));
        var result = new string?[n.Input.Count];
        result[0] = c.B.Op("Slice", d[0]!, begins, ends, c.B.Ints([.. Enumerable.Range(0, rank).Select(i => (long)i)]));
        return result;
    }

    private static string?[] ReduceBack(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var x = n.Input[0];
        var dimsX = c.Dims(x);
        var rank = dimsX.Length;
        long[]? axes = n.OpType == "ReduceMean" ? n.GetInts("axes") : (n.Input.Count > 1 && n.Input[1].Length > 0 ? c.ConstantInts(n.Input[1]) : null);
        var noopWithEmpty = n.GetInt("noop_with_empty_axes", 0) == 1;
        if (n.OpType == "ReduceSum" && n.Input.Count > 1 && n.Input[1].Length > 0 && axes is null)
        {
            throw new UnsupportedOperatorException(n.OpType, n.Name, "the axes input must be a constant.");
        }

        if (axes is null || axes.Length == 0)
        {
            if (noopWithEmpty)
            {
                return [d[0], null];
            }

            axes = [.. Enumerable.Range(0, rank).Select(i => (long)i)];
        }

        axes = [.. axes.Select(a => a < 0 ? a + rank : a)];
        var kept = dimsX.Select((v, i) => axes.Contains(i) ? 1 : v).ToArray();
        var grad = c.B.Op("Expand", c.B.Op("Reshape", d[0]!, c.B.Ints(kept)), c.B.Ints(dimsX));
        if (n.OpType == "ReduceMean")
        {
            var count = axes.Aggregate(1L, (a, i) => a * dimsX[i]);
            grad = c.B.Op("Mul", grad, c.Scalar(1.0 / count, x));
        }

        return n.Input.Count > 1 ? [grad, null] : [grad];
    }

    private static string?[] Gemm(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        // Y = α·op(A)·op(B) + β·C. With G = α·dY:
        //   dA = transA ? op(B)·Gᵀ : G·op(B)ᵀ,   dB = transB ? Gᵀ·op(A) : op(A)ᵀ·G,   dC = β·reduce(dY).
        var (a, bb) = (n.Input[0], n.Input[1]);
        var transA = n.GetInt("transA", 0);
        var transB = n.GetInt("transB", 0);
        var alpha = n.GetFloat("alpha", 1f);
        var beta = n.GetFloat("beta", 1f);
        var dY = d[0]!;
        var result = new string?[n.Input.Count];
        if (need[0])
        {
            result[0] = transA == 1
                ? c.B.Op("Gemm", [bb, dY], Attr("transA", transB), Attr("transB", 1L), Attr("alpha", alpha))
                : c.B.Op("Gemm", [dY, bb], Attr("transA", 0L), Attr("transB", 1 - transB), Attr("alpha", alpha));
        }

        if (need[1])
        {
            result[1] = transB == 1
                ? c.B.Op("Gemm", [dY, a], Attr("transA", 1L), Attr("transB", transA), Attr("alpha", alpha))
                : c.B.Op("Gemm", [a, dY], Attr("transA", 1 - transA), Attr("transB", 0L), Attr("alpha", alpha));
        }

        if (n.Input.Count > 2 && need[2])
        {
            var dC = c.ReduceTo(dY, c.Dims(n.Output[0]), c.Dims(n.Input[2]));
            result[2] = beta == 1f ? dC : c.B.Op("Mul", dC, c.Scalar(beta, n.Input[2]));
        }

        return result;
    }

    private static string?[] MatMul(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var (a, bb) = (n.Input[0], n.Input[1]);
        var (ra, rb) = (c.Dims(a).Length, c.Dims(bb).Length);
        if (ra < 2 || rb < 2)
        {
            throw new UnsupportedOperatorException(n.OpType, n.Name, "MatMul with a 1-D operand has no gradient rule; use 2-D operands.");
        }

        var dY = d[0]!;
        var dimsY = c.Dims(n.Output[0]);
        string SwapLast(string v, int rank) => c.B.Op("Transpose", [v],
            Attr("perm", Enumerable.Range(0, rank).Select(i => (long)(i == rank - 2 ? rank - 1 : i == rank - 1 ? rank - 2 : i))));
        string? dA = null, dB = null;
        if (need[0])
        {
            var full = c.B.Op("MatMul", dY, SwapLast(bb, rb));
            dA = c.ReduceTo(full, [.. dimsY[..^2], c.Dims(a)[^2], c.Dims(a)[^1]], c.Dims(a));
        }

        if (need[1])
        {
            if (rb == 2 && ra > 2)
            {
                // Common Linear case x[..., K]·W[K, N]: fold batch axes into one GEMM instead of a batched product + sum.
                var k = c.Dims(a)[^1];
                var flatA = c.B.Op("Reshape", a, c.B.Ints(-1, k));
                var flatDy = c.B.Op("Reshape", dY, c.B.Ints(-1, dimsY[^1]));
                dB = c.B.Op("Gemm", [flatA, flatDy], Attr("transA", 1L));
            }
            else
            {
                var full = c.B.Op("MatMul", SwapLast(a, ra), dY);
                dB = c.ReduceTo(full, [.. dimsY[..^2], c.Dims(bb)[^2], c.Dims(bb)[^1]], c.Dims(bb));
            }
        }

        return [dA, dB];
    }
}
