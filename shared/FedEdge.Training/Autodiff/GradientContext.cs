using FedEdge.Onnx;
using FedEdge.Onnx.Proto;

namespace FedEdge.Training.Autodiff;

/// <summary>What a gradient rule may use: the graph being built, static shapes, constant values.</summary>
internal sealed class GradientContext(GraphBuilder builder, ValueShapes shapes, IReadOnlyDictionary<string, TensorProto> constants)
{
    public GraphBuilder B { get; } = builder;

    public long[] Dims(string value) => shapes[value].Dims;

    public TensorProto.Types.DataType Type(string value) => shapes[value].ElementType;

    public bool IsFloating(string value) => shapes.TryGet(value, out var t) && t.IsFloating;

    /// <summary>A scalar constant with the element type of <paramref name="like"/>.</summary>
    public string Scalar(double value, string like) => B.Scalar(value, Type(like));

    /// <summary>Records the shape of a value a rule created, so later rules can use it.</summary>
    public string Known(string value, string sameShapeAs)
    {
        shapes.Set(value, shapes[sameShapeAs]);
        return value;
    }

    public string Known(string value, TensorProto.Types.DataType type, long[] dims)
    {
        shapes.Set(value, new TensorShape(type, dims));
        return value;
    }

    /// <summary>Int64 values of a constant input (initializer or Constant node), or null when computed at run time.</summary>
    public long[]? ConstantInts(string value) =>
        constants.TryGetValue(value, out var t) && t.DataType == (int)TensorProto.Types.DataType.Int64 ? t.ToInt64Array() : null;

    public double? ConstantScalar(string value)
    {
        if (!constants.TryGetValue(value, out var t) || t.ElementCount() != 1)
        {
            return null;
        }

        return t.ElementType() switch
        {
            TensorProto.Types.DataType.Float => t.ToFloatArray()[0],
            TensorProto.Types.DataType.Double => t.ToDoubleArray()[0],
            TensorProto.Types.DataType.Int64 => t.ToInt64Array()[0],
            _ => null,
        };
    }

    /// <summary>Element type of the gradients of the node being differentiated.</summary>
    public TensorProto.Types.DataType ElementType { get; set; } = TensorProto.Types.DataType.Float;

    public string Reshape(string value, long[] dims) =>
        Known(B.Op("Reshape", value, B.Ints(dims)), ElementType, dims);

    /// <summary>
    /// Undoes numpy broadcasting: sums <paramref name="grad"/> (shaped <paramref name="gradDims"/>) over
    /// the axes that broadcasting added or stretched, then reshapes it to <paramref name="target"/>.
    /// </summary>
    public string ReduceTo(string grad, long[] gradDims, long[] target)
    {
        if (gradDims.SequenceEqual(target))
        {
            return grad;
        }

        var lead = gradDims.Length - target.Length;
        var axes = new List<long>();
        for (var i = 0; i < gradDims.Length; i++)
        {
            if (i < lead || (target[i - lead] == 1 && gradDims[i] != 1))
            {
                axes.Add(i);
            }
        }

        if (axes.Count == lead && lead > 0)
        {
            // Only leading axes were added (e.g. a bias [n] under [B, n]): drop them in the sum itself, with no
            // Reshape node after it.
            return Known(B.Op("ReduceSum", [grad, B.Ints([.. axes])], GraphBuilder.Attr("keepdims", 0L)), ElementType, target);
        }

        var reduced = axes.Count == 0
            ? grad
            : B.Op("ReduceSum", [grad, B.Ints([.. axes])], GraphBuilder.Attr("keepdims", 1L));
        return Reshape(reduced, target);
    }

    /// <summary>Scatter-adds <paramref name="values"/> into a zero tensor of <paramref name="numel"/> elements at flat <paramref name="indices"/>.</summary>
    public string ScatterAddFlat(string values, string indices, long numel, long[] outDims)
    {
        var zeros = ZerosFlat(numel);
        var flatValues = B.Op("Reshape", values, B.Ints(-1));
        var flatIndices = B.Op("Reshape", indices, B.Ints(-1));
        var scattered = B.Op("ScatterElements", [zeros, flatIndices, flatValues],
            GraphBuilder.Attr("axis", 0L), GraphBuilder.Attr("reduction", "add"));
        return Reshape(scattered, outDims);
    }

    public string ZerosFlat(long numel)
    {
        var value = ElementType == TensorProto.Types.DataType.Double
            ? TensorProtoExtensions.Create("value", [0.0], 1)
            : TensorProtoExtensions.Create("value", [0f], 1);
        return B.Op("ConstantOfShape", [B.Ints(numel)], GraphBuilder.Attr("value", value));
    }

    /// <summary>
    /// Gradient of an op that only moves or copies elements of its input (Slice, Gather, Expand, Tile...):
    /// run the same op on a tensor of flat element indices, then scatter-add the output gradient there.
    /// </summary>
    public string IndexMapGradient(NodeProto node, string dY, int dataInput = 0)
    {
        var x = node.Input[dataInput];
        var dims = Dims(x);
        var numel = dims.Aggregate(1L, (a, d) => a * d);
        var range = B.Op("Range", B.Constant([0L]), B.Constant([numel]), B.Constant([1L]));
        var indexTensor = B.Op("Reshape", range, B.Ints(dims));
        var inputs = node.Input.ToArray();
        inputs[dataInput] = indexTensor;
        var mapped = B.Op(node.OpType, inputs, [.. node.Attribute]);
        return ScatterAddFlat(dY, mapped, numel, dims);
    }
}
