using FedEdge.Onnx.Proto;
using static FedEdge.Onnx.GraphBuilder;
using DataType = FedEdge.Onnx.Proto.TensorProto.Types.DataType;

namespace FedEdge.Training.Tests;

/// <summary>
/// Finite-difference checks of every gradient rule. Float64 where ONNX Runtime's CPU kernels (forward and
/// the ops the rule emits) support it; float32 with looser tolerances for the convolution family
/// (Conv, ConvTranspose, MaxUnpool and AveragePool are float-only there).
/// </summary>
public class GradientCheckTests
{
    private const double Eps64 = 1e-6, Rtol64 = 1e-6, Atol64 = 1e-8;
    private const double Eps32 = 1e-2, Rtol32 = 2e-2, Atol32 = 2e-3;

    public static TheoryData<string> DoubleCases =>
    [
        "Gemm 0 0", "Gemm 0 1", "Gemm 1 0", "Gemm 1 1", "Gemm bias-row", "Gemm no-bias",
        "MatMul 2d", "MatMul batched-weights", "MatMul broadcast-weights",
        "Add", "Sub", "Mul", "Div", "Sum", "Pow", "Add same-shape",
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Clip", "Clip relu6",
        "ChannelShuffle",
        "Softmax", "LogSoftmax", "Where", "Cast",
        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Concat", "Split",
        "Slice", "Gather", "GatherElements", "Expand", "Tile", "Pad", "ReduceSum", "ReduceMean",
        "MaxPool overlapping", "BatchNormalization", "Shape-subgraph",
    ];

    public static TheoryData<string> FloatCases =>
    [
        "Conv basic", "Conv stride-pad", "Conv dilation-asymmetric", "Conv same-upper", "Conv group-input",
        "Conv depthwise", "Conv depthwise-stride", "Conv depthwise-multiplier", "Conv grouped", "Conv grouped-dilation-uneven", "Conv depthwise-kernel-over-input",
        "Conv single-channel", "Conv single-channel-stride",
        "MaxPool 2x2", "MaxPool tiled", "MaxPool tiled-remainder", "MaxPool after-relu", "AveragePool 2x2", "AveragePool pads-exclude", "AveragePool pads-include", "GlobalAveragePool", "Erf",
        "HardSigmoid", "HardSigmoid torch", "HardSwish", "SqueezeExcitation",
    ];

    [Theory]
    [MemberData(nameof(DoubleCases))]
    public void GradientMatchesFiniteDifferencesInFloat64(string name)
    {
        var check = new GradientCheck(DataType.Double);
        var y = Build(check, name);
        check.Run(y, Eps64, Rtol64, Atol64);
    }

    [Theory]
    [MemberData(nameof(FloatCases))]
    public void GradientMatchesFiniteDifferencesInFloat32(string name)
    {
        var check = new GradientCheck(DataType.Float);
        var y = Build(check, name);
        check.Run(y, Eps32, Rtol32, Atol32);
    }

    /// <summary>
    /// Exact ties (finite differences cannot see them): like PyTorch, a tiled MaxPool gives each window's gradient
    /// to its first maximum in row-major order. Values in {0, 1, 2} make most windows tie; a 2×3 kernel over 6×7
    /// also leaves an uncovered column, whose gradient must be zero.
    /// </summary>
    [Fact]
    public void TiledMaxPoolGivesTiesToTheFirstMaximum()
    {
        long[] dims = [2, 3, 6, 7];
        var random = new Random(7);
        var x = Enumerable.Range(0, 2 * 3 * 6 * 7).Select(_ => (double)random.Next(3)).ToArray();
        var c = new GradientCheck(DataType.Float); // ONNX Runtime's Resize and MaxPool are float-only
        var y = c.Builder.Op("MaxPool", [c.Input("X", dims, x)], Attr("kernel_shape", new long[] { 2, 3 }), Attr("strides", new long[] { 2, 3 }));
        var seed = Enumerable.Range(1, 2 * 3 * 3 * 2).Select(v => (double)v).ToArray();
        var grad = c.Gradients(y, seed)[0];

        var expected = new double[x.Length];
        for (var plane = 0; plane < 6; plane++)
        {
            for (var wr = 0; wr < 3; wr++)
            {
                for (var wc = 0; wc < 2; wc++)
                {
                    var best = -1;
                    for (var r = wr * 2; r < wr * 2 + 2; r++)
                    {
                        for (var col = wc * 3; col < wc * 3 + 3; col++)
                        {
                            var i = (plane * 6 + r) * 7 + col;
                            if (best < 0 || x[i] > x[best])
                            {
                                best = i;
                            }
                        }
                    }

                    expected[best] = seed[(plane * 3 + wr) * 2 + wc];
                }
            }
        }

        Assert.Equal(expected, grad);
    }

    private static string Build(GradientCheck c, string name)
    {
        var b = c.Builder;
        var parts = name.Split(' ');
        switch (parts[0])
        {
            case "Gemm":
                {
                    var (ta, tb) = parts[1] is "0" or "1" ? (long.Parse(parts[1]), long.Parse(parts[2])) : (0L, 1L);
                    var a = c.Input("A", ta == 1 ? [4, 3] : [3, 4]);
                    var w = c.Input("B", tb == 1 ? [5, 4] : [4, 5]);
                    string[] inputs = parts[1] switch
                    {
                        "no-bias" => [a, w],
                        "bias-row" => [a, w, c.Input("C", [1, 5])],
                        _ => [a, w, c.Input("C", [5])],
                    };
                    return b.Op("Gemm", inputs, Attr("transA", ta), Attr("transB", tb), Attr("alpha", 0.7f), Attr("beta", 1.3f));
                }

            case "MatMul":
                return parts[1] switch
                {
                    "2d" => b.Op("MatMul", c.Input("A", [3, 4]), c.Input("B", [4, 5])),
                    "batched-weights" => b.Op("MatMul", c.Input("A", [2, 3, 4]), c.Input("B", [2, 4, 5])),
                    _ => b.Op("MatMul", c.Input("A", [2, 3, 4]), c.Input("B", [4, 5])),
                };
            case "Add" or "Sub" or "Mul" or "Div":
                {
                    var same = parts.Length > 1;
                    var a = c.Input("A", [2, 3, 4], 0.5, 1.5);
                    var other = c.Input("B", same ? [2, 3, 4] : [3, 1], 0.5, 1.5);
                    return b.Op(parts[0], a, other);
                }

            case "Sum":
                return b.Op("Sum", c.Input("A", [2, 3]), c.Input("B", [3]), c.Input("C", [2, 1]));
            case "Pow":
                return b.Op("Pow", c.Input("A", [2, 3], 0.5, 2), c.Input("E", [3], 1, 3));
            case "Log" or "Sqrt" or "Reciprocal":
                return b.Op(parts[0], c.Input("X", [2, 5], 0.5, 2));
            case "Relu" or "Sigmoid" or "Tanh" or "Exp" or "Neg" or "Abs" or "Erf" or "Identity":
                return b.Op(parts[0], c.Input("X", [2, 5], -2, 2));
            case "LeakyRelu":
                return b.Op("LeakyRelu", [c.Input("X", [2, 5], -2, 2)], Attr("alpha", 0.1f));
            case "Clip" when parts.Length > 1:
                // ReLU6 as torch exports it: Clip(x, 0, 6), values on both sides of both bounds.
                return b.Op("Clip", c.Input("X", [3, 5], -3, 9), c.Constant([0.0], []), c.Constant([6.0], []));
            case "Clip":
                return b.Op("Clip", c.Input("X", [3, 5], -2, 2), c.Constant([-0.5], []), c.Constant([0.7], []));
            case "HardSigmoid" when parts.Length > 1:
                // torch's Hardsigmoid: α = 1/6, β = 1/2; inputs cover both flat parts and the slope.
                return b.Op("HardSigmoid", [c.Input("X", [3, 6], -5, 5)], Attr("alpha", 1f / 6), Attr("beta", 0.5f));
            case "HardSigmoid":
                return b.Op("HardSigmoid", [c.Input("X", [3, 6], -4, 4)], Attr("alpha", 0.3f), Attr("beta", 0.4f));
            case "HardSwish":
                return b.Op("HardSwish", c.Input("X", [3, 6], -5, 5));
            case "SqueezeExcitation":
                {
                    // x · Sigmoid(Conv(Relu(Conv(GlobalAveragePool(x))))) with the gate broadcast over H × W; x
                    // reaches the output along both paths (the 1×1 Convs on a 1×1 map written as MatMuls).
                    var x = c.Input("X", [2, 4, 3, 3], -2, 2);
                    var pooled = b.Op("Reshape", b.Op("GlobalAveragePool", x), b.Ints(2, 4));
                    var squeezed = b.Op("Relu", b.Op("MatMul", pooled, c.Input("W1", [4, 2])));
                    var gate = b.Op("Sigmoid", b.Op("MatMul", squeezed, c.Input("W2", [2, 4])));
                    return b.Op("Mul", x, b.Op("Reshape", gate, b.Ints(2, 4, 1, 1)));
                }

            case "ChannelShuffle":
                {
                    // ShuffleNet's channel shuffle: [N, G·C', H, W] → [N, G, C', H, W] → swap 1, 2 → [N, C'·G, H, W],
                    // after a Split into two branches and a Concat back, with a product so the gradient is not constant.
                    var x = c.Input("X", [2, 6, 2, 2]);
                    var halves = b.Node("Split", [x, b.Ints(3, 3)], 2, Attr("axis", 1L));
                    var joined = b.Op("Concat", [halves[0], b.Op("Mul", halves[1], halves[1])], Attr("axis", 1L));
                    var grouped = b.Op("Reshape", joined, b.Ints(2, 2, 3, 2, 2));
                    var shuffled = b.Op("Reshape", b.Op("Transpose", [grouped], Attr("perm", new long[] { 0, 2, 1, 3, 4 })), b.Ints(2, 6, 2, 2));
                    return b.Op("Mul", shuffled, c.Input("S", [6, 1, 1]));
                }

            case "Softmax" or "LogSoftmax":
                return b.Op(parts[0], [c.Input("X", [3, 4, 5], -2, 2)], Attr("axis", 1L));
            case "Where":
                {
                    var cond = b.Op("Greater", c.Constant([0.3, -1, 2, 0.1, -0.2, 0.9], 2, 3), c.Constant([0.0], []));
                    return b.Op("Where", cond, c.Input("A", [2, 3]), c.Input("B", [3]));
                }

            case "Cast":
                {
                    // A cast between floating types passes the gradient back in the input's type.
                    var f = b.Op("Cast", [c.Input("X", [2, 3])], Attr("to", (long)c.Type));
                    return b.Op("Mul", f, f);
                }

            case "Flatten":
                return b.Op("Flatten", [c.Input("X", [2, 3, 4])], Attr("axis", 2L));
            case "Reshape":
                return b.Op("Reshape", c.Input("X", [2, 3, 4]), b.Ints(4, -1));
            case "Transpose":
                return b.Op("Transpose", [c.Input("X", [2, 3, 4])], Attr("perm", new long[] { 2, 0, 1 }));
            case "Squeeze":
                return b.Op("Squeeze", c.Input("X", [2, 1, 4]), b.Ints(1));
            case "Unsqueeze":
                return b.Op("Unsqueeze", c.Input("X", [2, 4]), b.Ints(0, 3));
            case "Concat":
                return b.Op("Concat", [c.Input("A", [2, 3]), c.Input("B", [2, 2]), c.Input("C", [2, 1])], Attr("axis", 1L));
            case "Split":
                {
                    var parts2 = b.Node("Split", [c.Input("X", [2, 6]), b.Ints(2, 4)], 2, Attr("axis", 1L));
                    // Only the second part reaches the output: the first part's gradient is zero.
                    return b.Op("Mul", parts2[1], parts2[1]);
                }

            case "Slice":
                return b.Op("Slice", c.Input("X", [4, 7]), b.Ints(1, -1), b.Ints(4, -7), b.Ints(0, 1), b.Ints(2, -2));
            case "Gather":
                return b.Op("Gather", [c.Input("X", [5, 3]), b.Ints(4, 0, 4, 2)], Attr("axis", 0L));
            case "GatherElements":
                return b.Op("GatherElements", [c.Input("X", [3, 4]), b.Constant(new long[] { 0, 3, 3, 1, 2, 2 }, 3, 2)], Attr("axis", 1L));
            case "Expand":
                return b.Op("Expand", c.Input("X", [3, 1]), b.Ints(2, 3, 4));
            case "Tile":
                return b.Op("Tile", c.Input("X", [2, 3]), b.Ints(2, 2));
            case "Pad":
                return b.Op("Pad", c.Input("X", [2, 3]), b.Ints(1, 0, 2, 1), c.Constant([0.5], []));
            case "ReduceSum":
                return b.Op("ReduceSum", [c.Input("X", [2, 3, 4]), b.Ints(0, 2)], Attr("keepdims", 0L));
            case "ReduceMean":
                return b.Op("ReduceMean", [c.Input("X", [2, 3, 4])], Attr("axes", new long[] { 1 }), Attr("keepdims", 1L));
            case "MaxPool" when parts[1] == "overlapping":
                return b.Node("MaxPool", [c.Input("X", [2, 2, 5, 5])], 2,
                    Attr("kernel_shape", new long[] { 3, 3 }), Attr("strides", new long[] { 1, 1 }), Attr("pads", new long[] { 1, 1, 1, 1 }))[0];
            case "MaxPool" when parts[1].StartsWith("tiled", StringComparison.Ordinal):
                // Single-output MaxPool with windows tiling the input (the gradient avoids Indices).
                return b.Op("MaxPool", [c.Input("X", parts[1] == "tiled" ? [2, 3, 6, 4] : [2, 2, 7, 5])],
                    Attr("kernel_shape", new long[] { 2, 2 }), Attr("strides", new long[] { 2, 2 }));
            case "MaxPool" when parts[1] == "after-relu":
                {
                    // Lowering pools before the ReLU; the gradient must still be that of MaxPool(Relu(x)).
                    c.LowerForTraining = true;
                    var relu = b.Op("Relu", c.Input("X", [2, 3, 6, 6]));
                    return b.Op("MaxPool", [relu], Attr("kernel_shape", new long[] { 2, 2 }), Attr("strides", new long[] { 2, 2 }));
                }

            case "MaxPool":
                return b.Node("MaxPool", [c.Input("X", [2, 3, 6, 6])], 2,
                    Attr("kernel_shape", new long[] { 2, 2 }), Attr("strides", new long[] { 2, 2 }))[0];
            case "BatchNormalization":
                {
                    c.LowerForTraining = true;
                    var x = c.Input("X", [4, 3, 2, 2]);
                    var scale = c.Input("scale", [3], 0.5, 1.5);
                    var bias = c.Input("bias", [3]);
                    var mean = c.Constant([0.1, 0.2, 0.3], 3);
                    var variance = c.Constant([1.0, 2.0, 0.5], 3);
                    var y = b.Op("BatchNormalization", [x, scale, bias, mean, variance], Attr("epsilon", 1e-3f));
                    return b.Op("Mul", y, y);
                }

            case "Shape-subgraph":
                {
                    // What torch.onnx.export emits for x.view(x.size(0), -1): Shape → Gather → Unsqueeze → Concat → Reshape.
                    var x = c.Input("X", [2, 3, 2]);
                    var batch = b.Op("Unsqueeze", b.Op("Gather", [b.Op("Shape", x), b.Constant([0L])], Attr("axis", 0L)), b.Ints(0));
                    var shape = b.Op("Concat", [batch, b.Ints(-1)], Attr("axis", 0L));
                    return b.Op("Reshape", x, shape);
                }

            case "Conv":
                {
                    if (parts[1].StartsWith("depthwise", StringComparison.Ordinal) || parts[1].StartsWith("grouped", StringComparison.Ordinal))
                    {
                        // Weight, input and bias gradients of grouped convolutions: depthwise (group = C, with a
                        // channel multiplier of 2 in one case) and 2 groups of 3 → 2 channels; the last case has a
                        // dilation and a stride that leaves input rows unused (the correlation is cropped).
                        var (inC, outC, group) = parts[1] switch
                        {
                            "depthwise" or "depthwise-stride" or "depthwise-kernel-over-input" => (4L, 4L, 4L),
                            "depthwise-multiplier" => (3L, 6L, 3L),
                            _ => (6L, 4L, 2L),
                        };
                        // A 5×5 kernel over a 2×2 map (padding 2), as MNASNet's last stages meet at 64×64 input.
                        var large = parts[1] == "depthwise-kernel-over-input";
                        var gx = c.Input("X", large ? [3, inC, 2, 2] : [3, inC, 7, 6]);
                        var gw = c.Input("W", large ? [outC, inC / group, 5, 5] : [outC, inC / group, 3, 3]);
                        var gb = c.Input("B", [outC]);
                        AttributeProto[] gAttrs = parts[1] switch
                        {
                            "depthwise-stride" => [Attr("strides", new long[] { 2, 2 }), Attr("pads", new long[] { 1, 1, 1, 1 })],
                            "grouped-dilation-uneven" => [Attr("dilations", new long[] { 2, 1 }), Attr("strides", new long[] { 2, 2 }), Attr("pads", new long[] { 1, 0, 0, 1 })],
                            "depthwise-kernel-over-input" => [Attr("pads", new long[] { 2, 2, 2, 2 })],
                            _ => [Attr("pads", new long[] { 1, 1, 1, 1 })],
                        };
                        return b.Op("Conv", [gx, gw, gb], [Attr("group", group), .. gAttrs]);
                    }

                    // One input channel: the weight gradient splits the batch into image groups (6 images: 2 groups of 3).
                    var single = parts[1].StartsWith("single-channel", StringComparison.Ordinal);
                    var x = c.Input("X", single ? [6, 1, 7, 7] : [2, 3, 7, 7]);
                    var w = c.Input("W", parts[1] == "group-input" || single ? [4, 1, 3, 3] : [4, 3, 3, 3]);
                    var bias = c.Input("B", [4]);
                    AttributeProto[] attrs = parts[1] switch
                    {
                        "stride-pad" or "single-channel-stride" => [Attr("strides", new long[] { 2, 2 }), Attr("pads", new long[] { 1, 1, 1, 1 })],
                        "dilation-asymmetric" => [Attr("dilations", new long[] { 2, 1 }), Attr("pads", new long[] { 0, 1, 1, 0 }), Attr("strides", new long[] { 1, 2 })],
                        "same-upper" => [Attr("auto_pad", "SAME_UPPER"), Attr("strides", new long[] { 2, 2 })],
                        _ => [],
                    };
                    if (parts[1] == "group-input")
                    {
                        // Grouped (depthwise-style) conv: only the input gradient is supported, so W is a constant here.
                        c.Inputs.Remove("W");
                        c.Inputs.Remove("B");
                        return b.Op("Conv", [b.Op("Concat", [x, b.Op("Slice", x, b.Ints(0), b.Ints(1), b.Ints(1))], Attr("axis", 1L)),
                        c.Constant(Enumerable.Range(0, 36).Select(i => Math.Sin(i)).ToArray(), 4, 1, 3, 3)], Attr("group", 4L));
                    }

                    return b.Op("Conv", [x, w, bias], attrs);
                }

            case "AveragePool":
                {
                    var x = c.Input("X", [2, 3, 6, 5]);
                    AttributeProto[] attrs = parts[1] switch
                    {
                        "2x2" => [Attr("kernel_shape", new long[] { 2, 2 }), Attr("strides", new long[] { 2, 2 })],
                        "pads-exclude" => [Attr("kernel_shape", new long[] { 3, 3 }), Attr("strides", new long[] { 2, 2 }), Attr("pads", new long[] { 1, 1, 1, 1 })],
                        _ => [Attr("kernel_shape", new long[] { 3, 3 }), Attr("strides", new long[] { 2, 2 }), Attr("pads", new long[] { 1, 1, 1, 1 }), Attr("count_include_pad", 1L)],
                    };
                    return b.Op("AveragePool", [x], attrs);
                }

            case "GlobalAveragePool":
                return b.Op("GlobalAveragePool", c.Input("X", [2, 3, 4, 5]));
            default:
                throw new ArgumentException(name);
        }
    }
}
