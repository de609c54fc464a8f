using FedEdge.Onnx;
using FedEdge.Onnx.Proto;

namespace FedEdge.Training;

/// <summary>
/// Turns the training-mode nodes of a model exported with <c>torch.onnx.export(training=TrainingMode.TRAINING)</c>
/// into their inference form, which is what the trainer lowers (and what ONNX Runtime's inference build runs for
/// evaluation and for the exported model): BatchNormalization with <c>training_mode = 1</c> and running-statistic
/// outputs, and Dropout with a <c>training_mode</c> input. Users export that way because the EVAL-mode exporter
/// folds every Conv → BatchNorm pair into the Conv, which leaves no BatchNorm to train.
/// </summary>
public static class InferenceForm
{
    /// <summary>Rewrites the graph in place; returns the number of nodes changed.</summary>
    /// <exception cref="OnnxFormatException">A training-mode output (a BatchNorm's updated running mean) is read by another node or is a graph output.</exception>
    public static int Apply(GraphProto graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var read = graph.Node.SelectMany(n => n.Input).Concat(graph.Output.Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        var changed = 0;
        foreach (var node in graph.Node.Where(n => string.IsNullOrEmpty(n.Domain)))
        {
            if (node.OpType == "BatchNormalization" && (node.Output.Count > 1 || node.GetInt("training_mode", 0) != 0))
            {
                var used = node.Output.Skip(1).FirstOrDefault(o => o.Length > 0 && read.Contains(o));
                if (used is not null)
                {
                    throw new OnnxFormatException(
                        $"BatchNormalization '{node.Name}' has its training output '{used}' read by the graph; FedEdge updates running statistics itself and needs the inference form (one output).");
                }

                while (node.Output.Count > 1)
                {
                    node.Output.RemoveAt(node.Output.Count - 1);
                }

                var mode = node.Attribute.FirstOrDefault(a => a.Name == "training_mode");
                if (mode is not null)
                {
                    node.Attribute.Remove(mode);
                }

                changed++;
            }
            else if (node.OpType == "Dropout" && node.Input.Count > 2)
            {
                // Without training_mode, Dropout is the identity in inference; the trainer's lowering applies the ratio.
                node.Input.RemoveAt(2);
                changed++;
            }
        }

        return changed;
    }
}
