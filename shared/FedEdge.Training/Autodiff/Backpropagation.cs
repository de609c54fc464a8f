using FedEdge.Onnx;
using FedEdge.Onnx.Proto;

namespace FedEdge.Training.Autodiff;

/// <summary>
/// Reverse-mode automatic differentiation over an ONNX graph: appends to the graph the nodes that
/// compute the gradients of a scalar (seeded by the caller) with respect to chosen values.
/// </summary>
public static class Backpropagation
{
    /// <summary>
    /// Emits gradient nodes for <paramref name="forward"/> (in topological order) into <paramref name="builder"/>.
    /// </summary>
    /// <param name="seeds">Gradient values already in the graph, keyed by the forward value they belong to (e.g. dLoss/dLogits).</param>
    /// <param name="wrt">Values whose gradients are wanted (typically the trainable initializers).</param>
    /// <returns>For each value in <paramref name="wrt"/> that the seeds depend on, the name of its gradient.</returns>
    public static IReadOnlyDictionary<string, string> Run(
        GraphBuilder builder,
        IReadOnlyList<NodeProto> forward,
        ValueShapes shapes,
        IReadOnlyDictionary<string, string> seeds,
        IReadOnlyCollection<string> wrt)
    {
        var constants = new Dictionary<string, TensorProto>(StringComparer.Ordinal);
        foreach (var init in builder.Graph.Initializer)
        {
            constants[init.Name] = init;
        }

        foreach (var node in forward.Where(n => n.OpType == "Constant"))
        {
            if (node.Find("value") is { T: { } t })
            {
                constants[node.Output[0]] = t;
            }
        }

        // Forward pass: which values depend on a value we differentiate with respect to.
        var requiresGrad = new HashSet<string>(wrt, StringComparer.Ordinal);
        foreach (var node in forward)
        {
            if (GradientRules.NonDifferentiable.Contains(node.OpType) || !node.Input.Any(requiresGrad.Contains))
            {
                continue;
            }

            foreach (var o in node.Output)
            {
                if (o.Length > 0 && shapes.TryGet(o, out var t) && t.IsFloating)
                {
                    requiresGrad.Add(o);
                }
            }
        }

        var context = new GradientContext(builder, shapes, constants);
        var contributions = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var (value, grad) in seeds)
        {
            contributions[value] = [grad];
            context.Known(grad, value);
        }

        string? GradientOf(string value)
        {
            if (!contributions.TryGetValue(value, out var list) || list.Count == 0)
            {
                return null;
            }

            if (list.Count > 1)
            {
                // A value used by several nodes receives the sum of their gradients.
                var sum = context.Known(builder.Op("Sum", [.. list]), value);
                list.Clear();
                list.Add(sum);
            }

            return list[0];
        }

        for (var index = forward.Count - 1; index >= 0; index--)
        {
            var node = forward[index];
            if (GradientRules.NonDifferentiable.Contains(node.OpType))
            {
                continue;
            }

            var dOut = node.Output.Select(o => o.Length > 0 ? GradientOf(o) : null).ToArray();
            if (dOut.All(g => g is null))
            {
                continue;
            }

            var need = node.Input.Select(i => i.Length > 0 && requiresGrad.Contains(i)).ToArray();
            if (!need.Any(n => n))
            {
                continue;
            }

            if (!GradientRules.TryGet(node.OpType, out var rule))
            {
                throw new UnsupportedOperatorException(node.OpType, node.Name,
                    $"FedEdge has no gradient rule for {node.OpType}{(string.IsNullOrEmpty(node.Domain) ? "" : $" (domain '{node.Domain}')")}.");
            }

            if (!string.IsNullOrEmpty(node.Domain) && node.Domain != "ai.onnx")
            {
                throw new UnsupportedOperatorException(node.OpType, node.Name, $"operators of domain '{node.Domain}' have no gradient rules.");
            }

            if (dOut[0] is null && node.OpType != "Split")
            {
                continue;
            }

            context.ElementType = shapes[node.Output[0]].ElementType;
            var dIn = rule(node, dOut, need, context);
            for (var i = 0; i < node.Input.Count && i < dIn.Length; i++)
            {
                if (need[i] && dIn[i] is { } g)
                {
                    context.Known(g, node.Input[i]);
                    if (!contributions.TryGetValue(node.Input[i], out var list))
                    {
                        contributions[node.Input[i]] = list = [];
                    }

                    list.Add(g);
                }
            }
        }

        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var w in wrt)
        {
            if (GradientOf(w) is { } g)
            {
                result[w] = g;
            }
        }

        return result;
    }
}
