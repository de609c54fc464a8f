using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using static FedEdge.Onnx.GraphBuilder;

namespace FedEdge.Training;

/// <summary>
/// Rewrites a model of ONNX opset 18–21 into the opset-17 form the training graphs are built in (their generated
/// nodes and gradient rules are written against opset 17). For the ops FedEdge trains, the later opsets changed
/// signatures, not float semantics: the Reduce ops other than ReduceSum take their axes as an input instead of an
/// attribute (18), Split gained num_outputs (18), Cast saturate (19, float8 only), Resize antialias and axes
/// (18), and 19–21 added element types. An input that must become an attribute has to be a constant.
/// </summary>
public static class OpsetForm
{
    /// <summary>Opset of the training graphs.</summary>
    public const long Target = 17;

    private static readonly HashSet<string> ReduceWithAxesInput = new(StringComparer.Ordinal)
    {
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    };

    /// <summary>Rewrites <paramref name="model"/> in place when its default opset is above 17; returns the nodes changed.</summary>
    /// <exception cref="OnnxFormatException">An axes input is computed at run time, or an attribute has a value opset 17 cannot express.</exception>
    public static int Apply(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.DefaultOpset() is <= Target or > ModelLayout.MaxOpset)
        {
            return 0; // nothing to do, or rejected with the supported range by ModelLayout
        }

        var graph = model.Graph;
        var constants = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var node in graph.Node.Where(n => n.OpType == "Constant" && n.Output.Count == 1 && n.Find("value")?.T is not null))
        {
            constants[node.Output[0]] = node.Find("value")!.T;
        }

        var changed = 0;
        foreach (var node in graph.Node.Where(n => string.IsNullOrEmpty(n.Domain) || n.Domain == "ai.onnx"))
        {
            if (ReduceWithAxesInput.Contains(node.OpType) && node.Input.Count > 1)
            {
                if (node.Input[1].Length > 0)
                {
                    var axes = constants.TryGetValue(node.Input[1], out var t) && t.DataType == (int)TensorProto.Types.DataType.Int64
                        ? t.ToInt64Array()
                        : throw new OnnxFormatException($"{node.OpType} '{node.Name}': its axes input '{node.Input[1]}' must be a constant to train the model.");
                    node.Attribute.Add(Attr("axes", axes));
                }

                node.Input.RemoveAt(1);
                changed++;
            }
            else if (node.OpType == "Split" && Remove(node, "num_outputs") is { } count)
            {
                // Without a split input, opset 17 splits into equal parts, one per output (an uneven last part fails
                // in ONNX Runtime with a message naming the node).
                changed += count.I == node.Output.Count ? 1
                    : throw new OnnxFormatException($"Split '{node.Name}': num_outputs = {count.I} but it has {node.Output.Count} outputs.");
            }
            else if (node.OpType == "Cast" && Remove(node, "saturate") is not null)
            {
                changed++;
            }
            else if (node.OpType == "Resize")
            {
                if (Remove(node, "antialias") is { I: not 0 } || Remove(node, "axes") is not null
                    || Remove(node, "keep_aspect_ratio_policy") is { S: var policy } && policy.ToStringUtf8() != "stretch")
                {
                    throw new OnnxFormatException($"Resize '{node.Name}': antialias, axes and keep_aspect_ratio_policy have no opset-17 form.");
                }
            }
        }

        foreach (var import in model.OpsetImport.Where(o => string.IsNullOrEmpty(o.Domain) || o.Domain == "ai.onnx"))
        {
            import.Version = Target;
        }

        return changed;
    }

    private static AttributeProto? Remove(NodeProto node, string name)
    {
        var attribute = node.Attribute.FirstOrDefault(a => a.Name == name);
        if (attribute is not null)
        {
            node.Attribute.Remove(attribute);
        }

        return attribute;
    }
}
