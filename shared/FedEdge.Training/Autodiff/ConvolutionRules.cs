using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using static FedEdge.Onnx.GraphBuilder;

namespace FedEdge.Training.Autodiff;

/// <summary>Gradient rules for 2-D convolution and pooling (NCHW).</summary>
internal static class ConvolutionRules
{
    /// <summary>Resolved spatial geometry of a Conv / pool node.</summary>
    private sealed record Window(long[] Kernel, long[] Strides, long[] Dilations, long[] Pads, long[] InDims, long[] OutDims)
    {
        /// <summary>output_padding that makes ConvTranspose produce exactly the input's spatial size.</summary>
        public long[] OutputPadding(NodeProto n) => [.. Enumerable.Range(0, 2).Select(i =>
        {
            var produced = Strides[i] * (OutDims[i] - 1) + (Kernel[i] - 1) * Dilations[i] + 1 - Pads[i] - Pads[i + 2];
            var extra = InDims[i] - produced;
            return extra >= 0
                ? extra
                : throw new UnsupportedOperatorException(n.OpType, n.Name, "its padding/stride geometry cannot be inverted.");
        })];
    }

    private static Window Resolve(NodeProto n, GradientContext c, long[]? kernelFromWeight = null)
    {
        var x = c.Dims(n.Input[0]);
        if (x.Length != 4)
        {
            throw new UnsupportedOperatorException(n.OpType, n.Name, $"only 2-D (NCHW) inputs have a gradient rule; input is [{string.Join(", ", x)}].");
        }

        var y = c.Dims(n.Output[0]);
        var kernel = n.GetInts("kernel_shape") ?? kernelFromWeight
            ?? throw new UnsupportedOperatorException(n.OpType, n.Name, "kernel_shape is missing.");
        var strides = n.GetInts("strides") ?? [1, 1];
        var dilations = n.GetInts("dilations") ?? [1, 1];
        long[] inDims = [x[2], x[3]];
        long[] outDims = [y[2], y[3]];
        var autoPad = n.GetString("auto_pad", "NOTSET");
        long[] pads;
        if (autoPad is "SAME_UPPER" or "SAME_LOWER")
        {
            pads = new long[4];
            for (var i = 0; i < 2; i++)
            {
                var total = Math.Max(0, (outDims[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - inDims[i]);
                var small = total / 2;
                (pads[i], pads[i + 2]) = autoPad == "SAME_UPPER" ? (small, total - small) : (total - small, small);
            }
        }
        else
        {
            pads = autoPad == "VALID" ? new long[4] : n.GetInts("pads") ?? new long[4];
        }

        return new Window(kernel, strides, dilations, pads, inDims, outDims);
    }

    public static string?[] Conv(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var (x, w) = (n.Input[0], n.Input[1]);
        var wDims = c.Dims(w);
        var win = Resolve(n, c, [wDims[2], wDims[3]]);
        var group = n.GetInt("group", 1);
        var dY = d[0]!;
        var result = new string?[n.Input.Count];
        if (need[0])
        {
            // dX is the transposed convolution of dY with the same weights. (A convolution with flipped weights
            // is equivalent for unit strides but ran six times slower in ONNX Runtime on the zoo cnn.)
            result[0] = c.B.Op("ConvTranspose", [dY, w],
                Attr("strides", win.Strides), Attr("pads", win.Pads), Attr("dilations", win.Dilations),
                Attr("group", group), Attr("kernel_shape", win.Kernel), Attr("output_padding", win.OutputPadding(n)));
        }

        if (need[1])
        {
            result[1] = group == 1 ? WeightGradient(x, dY, win, c) : GroupedWeightGradient(x, dY, group, win, c);
        }

        if (n.Input.Count > 2 && need[2])
        {
            result[2] = c.B.Op("ReduceSum", [dY, c.B.Ints(0, 2, 3)], Attr("keepdims", 0L));
        }

        return result;
    }

    /// <summary>
    /// dW[m,c,i,j] = Σ_{n,h,w} dY[n,m,h,w]·X[n,c,h·s+i·d,w·s+j·d]: a convolution of Xᵀ (channels as batch) by
    /// dYᵀ (batch as channels) with strides and dilations swapped; any stride, dilation and padding. On the zoo
    /// cnn (batch 64, per-node minima of ONNX Runtime's profile) this beats an explicit im2col (25 Slices +
    /// Concat) + GEMM also for the first layer: 0.58 against 0.62 ms on one thread and 0.44 against 0.62 ms on
    /// two, as the Conv runs on all intra-op threads and the copies do not.
    /// With one input channel that convolution has a batch of one, which ONNX Runtime's Conv spreads poorly over
    /// its threads (it splits the 25 output positions of a 5×5 kernel): the images are split into G groups
    /// (group = G, the G partial sums added afterwards), so each thread takes whole groups. Zoo cnn, first layer,
    /// batch 64, two threads: 0.31 ms with G = 8 against 0.48–0.52 ms ungrouped (same cost on one thread).
    /// </summary>
    private static string WeightGradient(string x, string dY, Window win, GradientContext c)
    {
        var dims = c.Dims(x);
        var dyDims = c.Dims(dY);
        var (batch, channels, outChannels) = (dims[0], dims[1], dyDims[1]);
        var groups = channels == 1 ? GreatestCommonDivisor(batch, ImageGroups) : 1;
        var xt = channels == 1 ? c.B.Op("Reshape", x, c.B.Ints(1, batch, dims[2], dims[3])) : c.B.Op("Transpose", [x], Attr("perm", new long[] { 1, 0, 2, 3 }));
        string kernel;
        if (groups == 1)
        {
            kernel = c.B.Op("Transpose", [dY], Attr("perm", new long[] { 1, 0, 2, 3 }));
        }
        else
        {
            // Output channel (g, m) of group g correlates the images g·N/G … (g+1)·N/G − 1 with their dY[·, m].
            var split = c.B.Op("Reshape", dY, c.B.Ints(groups, batch / groups, outChannels, dyDims[2] * dyDims[3]));
            var perGroup = c.B.Op("Transpose", [split], Attr("perm", new long[] { 0, 2, 1, 3 }));
            kernel = c.B.Op("Reshape", perGroup, c.B.Ints(groups * outChannels, batch / groups, dyDims[2], dyDims[3]));
        }

        var corr = c.B.Op("Conv", [xt, kernel], Attr("strides", win.Dilations), Attr("dilations", win.Strides), Attr("pads", win.Pads),
            Attr("group", groups));

        // The correlation is [C, G·M, a, b]; it can be larger than the kernel (a, b ≥ kh, kw) when the stride does
        // not divide the input evenly. No node is emitted for a step that changes nothing.
        var corrDims = CorrelationSize(win);
        var exact = corrDims[0] == win.Kernel[0] && corrDims[1] == win.Kernel[1];
        if (groups > 1)
        {
            // C = 1: Σ over the G groups of [G, M, 1, a, b] gives [M, 1, a, b] = dW's layout, with no Transpose.
            var partial = c.B.Op("Reshape", corr, c.B.Ints(groups, outChannels, 1, corrDims[0], corrDims[1]));
            var summed = c.B.Op("ReduceSum", [partial, c.B.Ints(0)], Attr("keepdims", 0L));
            return exact ? summed : c.B.Op("Slice", summed, c.B.Ints(0, 0), c.B.Ints(win.Kernel), c.B.Ints(2, 3));
        }

        var cropped = CropToKernel(corr, win, c);
        return channels == 1
            ? c.B.Op("Reshape", cropped, c.B.Ints(outChannels, 1, win.Kernel[0], win.Kernel[1]))
            : c.B.Op("Transpose", [cropped], Attr("perm", new long[] { 1, 0, 2, 3 }));
    }

    /// <summary>
    /// Weight gradient of a grouped convolution (G groups of c = C/G input and m = M/G output channels; depthwise:
    /// c = 1): the correlation of <see cref="WeightGradient"/> run as a grouped Conv. Xᵀ is [c, G·N, H, W] (batch
    /// = a channel within its group, channels = (group, image)) and dYᵀ [G·m, N, Ho, Wo], so with group = G the
    /// output channel (g, j) correlates only the images' channels of group g with their dY[·, g·m + j]; the result
    /// [c, G·m, kh, kw] is dW = [M, c, kh, kw] transposed.
    /// </summary>
    private static string GroupedWeightGradient(string x, string dY, long groups, Window win, GradientContext c)
    {
        var dims = c.Dims(x);
        var (batch, perGroup) = (dims[0], dims[1] / groups);
        var outChannels = c.Dims(dY)[1];
        var grouped = c.B.Op("Reshape", x, c.B.Ints(batch, groups, perGroup, dims[2], dims[3]));
        var xt = c.B.Op("Reshape", c.B.Op("Transpose", [grouped], Attr("perm", new long[] { 2, 1, 0, 3, 4 })),
            c.B.Ints(perGroup, groups * batch, dims[2], dims[3]));
        var kernel = c.B.Op("Transpose", [dY], Attr("perm", new long[] { 1, 0, 2, 3 }));
        var corr = c.B.Op("Conv", [xt, kernel], Attr("strides", win.Dilations), Attr("dilations", win.Strides), Attr("pads", win.Pads),
            Attr("group", groups));
        var cropped = CropToKernel(corr, win, c);
        return perGroup == 1
            ? c.B.Op("Reshape", cropped, c.B.Ints(outChannels, 1, win.Kernel[0], win.Kernel[1]))
            : c.B.Op("Transpose", [cropped], Attr("perm", new long[] { 1, 0, 2, 3 }));
    }

    /// <summary>The correlation's first kh × kw positions (no node when it is already that size).</summary>
    private static string CropToKernel(string correlation, Window win, GradientContext c)
    {
        var size = CorrelationSize(win);
        return size[0] == win.Kernel[0] && size[1] == win.Kernel[1]
            ? correlation
            : c.B.Op("Slice", correlation, c.B.Ints(0, 0), c.B.Ints(win.Kernel), c.B.Ints(2, 3));
    }

    /// <summary>
    /// Spatial size of the weight-gradient correlation: larger than the kernel when the stride does not divide the
    /// padded input evenly (the extra rows and columns are cropped).
    /// </summary>
    private static long[] CorrelationSize(Window win) => [.. Enumerable.Range(0, 2).Select(i =>
        (win.InDims[i] + win.Pads[i] + win.Pads[i + 2] - ((win.OutDims[i] - 1) * win.Strides[i] + 1)) / win.Dilations[i] + 1)];

    /// <summary>Image groups of the first-layer weight gradient: enough for a few threads, few enough that each group still has a long reduction.</summary>
    private const long ImageGroups = 8;

    private static long GreatestCommonDivisor(long a, long b) => b == 0 ? a : GreatestCommonDivisor(b, a % b);

    /// <summary>
    /// A 2-D MaxPool whose windows tile the input (kernel = stride, no padding or dilation): its gradient
    /// needs no Indices output, which keeps ONNX Runtime's fast pooling kernel in the forward pass (the
    /// MaxPool kernel with Indices is about ten times slower).
    /// </summary>
    public static bool IsTiledMaxPool(NodeProto n)
    {
        var kernel = n.GetInts("kernel_shape");
        var strides = n.GetInts("strides");
        return kernel is { Length: 2 } && strides is not null && kernel.SequenceEqual(strides)
            && (n.GetInts("pads") ?? [0, 0, 0, 0]).All(p => p == 0)
            && (n.GetInts("dilations") ?? [1, 1]).All(v => v == 1)
            && n.GetString("auto_pad", "NOTSET") is "NOTSET" or "VALID"
            && n.GetInt("ceil_mode", 0) == 0 && n.GetInt("storage_order", 0) == 0;
    }

    /// <summary>
    /// Tiled MaxPool gradient with PyTorch's tie rule: each window's gradient goes to its FIRST maximum in
    /// row-major order, and nothing else. The maxima are where X equals the output upsampled back to X's grid;
    /// each maximum is scored H·W − (its flat index in its H×W plane), other elements 0, so the window's max
    /// score names its first maximum (row-major order within a window is flat-index order). MaxUnpool then
    /// places dY there; rows and columns beyond the last full window get zero. All ops run on whole tensors
    /// (nearest Resize, the fast MaxPool kernel): ONNX Runtime's MaxPool with an Indices output is about ten
    /// times slower than the one without (zoo cnn, first pool: 0.90 against 0.07 ms on one thread).
    /// </summary>
    private static string TiledMaxPool(NodeProto n, string dY, GradientContext c)
    {
        var x = n.Input[0];
        var dims = c.Dims(x);
        var y = c.Dims(n.Output[0]);
        var k = n.GetInts("kernel_shape")!;
        var plane = dims[2] * dims[3];
        if (plane >= 1 << 24)
        {
            throw new UnsupportedOperatorException(n.OpType, n.Name, $"tiled MaxPool planes must be smaller than 2^24 elements (it is {dims[2]}×{dims[3]}).");
        }

        long[] coveredDims = [dims[0], dims[1], y[2] * k[0], y[3] * k[1]];
        var covered = x;
        if (coveredDims[2] != dims[2] || coveredDims[3] != dims[3])
        {
            covered = c.B.Op("Slice", x, c.B.Ints(0, 0), c.B.Ints(coveredDims[2], coveredDims[3]), c.B.Ints(2, 3));
        }

        var scores = new float[coveredDims[2] * coveredDims[3]];
        for (var r = 0; r < coveredDims[2]; r++)
        {
            for (var col = 0; col < coveredDims[3]; col++)
            {
                scores[r * coveredDims[3] + col] = plane - (r * dims[3] + col); // exact: below 2^24
            }
        }

        var upsampled = c.B.Op("Resize", [n.Output[0], "", "", c.B.Ints(coveredDims)],
            Attr("mode", "nearest"), Attr("coordinate_transformation_mode", "asymmetric"), Attr("nearest_mode", "floor"));
        const long F = (long)TensorProto.Types.DataType.Float;
        var isMax = c.B.Op("Cast", [c.B.Op("Equal", covered, upsampled)], Attr("to", F));
        var scored = c.B.Op("Mul", isMax, c.B.Constant(scores, 1, 1, coveredDims[2], coveredDims[3]));
        var best = c.B.Op("MaxPool", [scored], Attr("kernel_shape", k), Attr("strides", k));
        // Flat index in [N, C, H, W]: the plane's offset (n·C + c)·H·W plus H·W − best score.
        var planeOffsets = c.B.Constant(Enumerable.Range(1, (int)(dims[0] * dims[1])).Select(i => i * plane).ToArray(), dims[0], dims[1], 1, 1);
        var indices = c.B.Op("Sub", planeOffsets, c.B.Op("Cast", [best], Attr("to", (long)TensorProto.Types.DataType.Int64)));
        return c.B.Op("MaxUnpool", [dY, indices, c.B.Ints(dims)], Attr("kernel_shape", k), Attr("strides", k));
    }

    public static string?[] MaxPool(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        if (n.Output.Count < 2 || n.Output[1].Length == 0)
        {
            return IsTiledMaxPool(n)
                ? [TiledMaxPool(n, d[0]!, c)]
                : throw new UnsupportedOperatorException(n.OpType, n.Name, "MaxPool needs its Indices output in training graphs.");
        }

        if (n.GetInt("storage_order", 0) != 0)
        {
            throw new UnsupportedOperatorException(n.OpType, n.Name, "storage_order = 1 is not supported.");
        }

        var win = Resolve(n, c);
        var x = n.Input[0];
        var dims = c.Dims(x);
        var overlapping = Enumerable.Range(0, 2).Any(i => (win.Kernel[i] - 1) * win.Dilations[i] + 1 > win.Strides[i]);
        if (!overlapping)
        {
            // Each input element is the maximum of at most one window: MaxUnpool places dY at the argmax positions.
            return [c.B.Op("MaxUnpool", [d[0]!, n.Output[1], c.B.Ints(dims)],
                Attr("kernel_shape", win.Kernel), Attr("strides", win.Strides), Attr("pads", win.Pads))];
        }

        // Overlapping windows may pick the same element more than once: scatter-add at the flat indices.
        return [c.ScatterAddFlat(d[0]!, n.Output[1], dims.Aggregate(1L, (a, b) => a * b), dims)];
    }

    public static string?[] AveragePool(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var win = Resolve(n, c);
        var x = n.Input[0];
        var dims = c.Dims(x);
        for (var i = 0; i < 2; i++)
        {
            var floor = (win.InDims[i] + win.Pads[i] + win.Pads[i + 2] - win.Kernel[i]) / win.Strides[i] + 1;
            if (floor != win.OutDims[i])
            {
                throw new UnsupportedOperatorException(n.OpType, n.Name, "ceil_mode windows that overhang the input are not supported.");
            }
        }

        var (ho, wo) = (win.OutDims[0], win.OutDims[1]);
        string scaled;
        var hasPads = win.Pads.Any(p => p != 0);
        if (hasPads && n.GetInt("count_include_pad", 0) == 0)
        {
            // Windows at the border average over fewer elements: divide each output's gradient by its own count.
            var inv = new double[ho * wo];
            for (var oh = 0; oh < ho; oh++)
            {
                for (var ow = 0; ow < wo; ow++)
                {
                    var h0 = oh * win.Strides[0] - win.Pads[0];
                    var w0 = ow * win.Strides[1] - win.Pads[1];
                    var rows = Math.Min(h0 + win.Kernel[0], win.InDims[0]) - Math.Max(h0, 0);
                    var cols = Math.Min(w0 + win.Kernel[1], win.InDims[1]) - Math.Max(w0, 0);
                    inv[oh * wo + ow] = 1.0 / (rows * cols);
                }
            }

            var invTensor = c.ElementType == TensorProto.Types.DataType.Double
                ? c.B.Constant(inv, 1, 1, ho, wo)
                : c.B.Constant(inv.Select(v => (float)v).ToArray(), 1, 1, ho, wo);
            scaled = c.B.Op("Mul", d[0]!, invTensor);
        }
        else
        {
            scaled = c.B.Op("Mul", d[0]!, c.Scalar(1.0 / (win.Kernel[0] * win.Kernel[1]), x));
        }

        // Spread every output gradient over its window: ConvTranspose with a kernel of ones, channels folded into batch.
        var folded = c.B.Op("Reshape", scaled, c.B.Ints(-1, 1, ho, wo));
        var count = (int)(win.Kernel[0] * win.Kernel[1]);
        var ones = c.ElementType == TensorProto.Types.DataType.Double
            ? c.B.Constant(Enumerable.Repeat(1.0, count).ToArray(), 1, 1, win.Kernel[0], win.Kernel[1])
            : c.B.Constant(Enumerable.Repeat(1f, count).ToArray(), 1, 1, win.Kernel[0], win.Kernel[1]);
        var spread = c.B.Op("ConvTranspose", [folded, ones],
            Attr("strides", win.Strides), Attr("pads", win.Pads), Attr("kernel_shape", win.Kernel),
            Attr("output_padding", win.OutputPadding(n)));
        return [c.Reshape(spread, dims)];
    }

    public static string?[] GlobalAveragePool(NodeProto n, string?[] d, bool[] need, GradientContext c)
    {
        var dims = c.Dims(n.Input[0]);
        var spatial = dims.Skip(2).Aggregate(1L, (a, b) => a * b);
        var expanded = c.B.Op("Expand", d[0]!, c.B.Ints(dims));
        return [c.B.Op("Mul", expanded, c.Scalar(1.0 / spatial, n.Input[0]))];
    }
}
