using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using static FedEdge.Onnx.GraphBuilder;

namespace FedEdge.Training.Autodiff;

/// <summary>An optimizer state tensor (momentum buffer, Adam moment) of one parameter.</summary>
public sealed record StateSlot(string Input, string Output, long[] Dims, int Offset, int Length);

/// <summary>A generated training-step graph and the names of its inputs and outputs.</summary>
public sealed class TrainingGraph
{
    internal TrainingGraph(ModelProto model, ModelLayout layout, int batchSize)
    {
        Model = model;
        Layout = layout;
        BatchSize = batchSize;
    }

    public ModelProto Model { get; }

    public ModelLayout Layout { get; }

    public int BatchSize { get; }

    public string FeaturesInput => Layout.InputName;

    public string LabelsInput { get; internal set; } = "";

    public string LossOutput { get; internal set; } = "";

    /// <summary>Scalar float input: η for SGD/momentum, η/(1 − β₁ᵗ) for Adam.</summary>
    public string LearningRateInput { get; internal set; } = "";

    /// <summary>Adam only: scalar input 1/√(1 − β₂ᵗ).</summary>
    public string? AdamCorrectionInput { get; internal set; }

    /// <summary>Output holding each managed tensor's value after the step (same order as <see cref="ModelLayout.Tensors"/>).</summary>
    public IReadOnlyList<string> NextOutputs { get; internal set; } = [];

    /// <summary>FedProx anchor input of each managed tensor (null where none: no proximal term or a buffer).</summary>
    public IReadOnlyList<string?> AnchorInputs { get; internal set; } = [];

    public IReadOnlyList<StateSlot> State { get; internal set; } = [];

    /// <summary>Optimizer-only graphs: the gradient input of each managed tensor (null for buffers).</summary>
    public IReadOnlyList<string?> GradientInputs { get; internal set; } = [];

    public int StateLength => State.Count == 0 ? 0 : State[^1].Offset + State[^1].Length;
}

/// <summary>Evaluation graph: loss sum and correct count for a batch of any size.</summary>
public sealed record EvaluationGraph(ModelProto Model, ModelLayout Layout, string LabelsInput, string LossSumOutput, string CorrectOutput);

/// <summary>
/// Builds the single training-step graph — forward, loss, reverse-mode gradients, optimizer update —
/// from an inference graph. See docs/training-engine.md.
/// </summary>
public static class TrainingGraphBuilder
{
    public const int StepOpset = 17;

    public static TrainingGraph Build(ModelProto model, TrainingOptions options, int batchSize)
    {
        options.Validate();
        var layout = ModelLayout.Analyze(model);
        var step = model.Clone();
        step.OpsetImport.Clear();
        step.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = StepOpset });
        foreach (var extra in model.OpsetImport.Where(o => !string.IsNullOrEmpty(o.Domain) && o.Domain != "ai.onnx"))
        {
            step.OpsetImport.Add(extra);
        }

        var graph = step.Graph;
        var b = new GraphBuilder(graph, "fe");
        var bufferUpdates = TrainingLowering.Lower(b, options.Seed); // sees the graph outputs, which it must keep
        graph.Output.Clear();
        graph.ValueInfo.Clear();

        // Data input fixed to the batch size; managed initializers become graph inputs bound to the trainer's buffers.
        graph.Input.Clear();
        var featureDims = new long[] { batchSize }.Concat(layout.SampleShape.Select(d => (long)d)).ToArray();
        b.AddInput(layout.InputName, TensorProto.Types.DataType.Float, [.. featureDims.Cast<object>()]);
        var managed = layout.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var kept = graph.Initializer.Where(t => !managed.Contains(t.Name)).ToList();
        graph.Initializer.Clear();
        graph.Initializer.AddRange(kept);
        var probeInputs = new Dictionary<string, TensorShape>(StringComparer.Ordinal)
        {
            [layout.InputName] = new(TensorProto.Types.DataType.Float, featureDims),
        };
        foreach (var t in layout.Tensors)
        {
            b.AddInput(t.Name, TensorProto.Types.DataType.Float, [.. t.Dims.Cast<object>()]);
            probeInputs[t.Name] = new(TensorProto.Types.DataType.Float, t.Dims);
        }

        var shapes = ValueShapes.Probe(graph, step.OpsetImport, probeInputs);
        var logits = layout.OutputName;
        var logitDims = shapes[logits].Dims;
        if (logitDims.Length != 2 || logitDims[0] != batchSize)
        {
            throw new OnnxFormatException(
                $"The model output '{logits}' must be [batch, classes]; for a batch of {batchSize} it is [{string.Join(", ", logitDims)}].");
        }

        var classes = logitDims[1];
        layout.ClassCount = (int)classes;
        var forward = graph.Node.ToList();
        var result = new TrainingGraph(step, layout, batchSize);

        // Loss and its gradient w.r.t. the logits, written directly (cheaper than differentiating the loss ops).
        var labels = b.UniqueName("labels");
        b.AddInput(labels, TensorProto.Types.DataType.Int64, batchSize);
        result.LabelsInput = labels;
        var oneHot = b.Op("OneHot", [labels, b.Constant([classes]), b.Constant([0f, 1f], 2)], Attr("axis", -1L));
        string loss, dLogits;
        if (options.Loss == LossKind.CrossEntropy)
        {
            var logProb = b.Op("LogSoftmax", [logits], Attr("axis", 1L));
            var picked = b.Op("GatherElements", [logProb, b.Op("Unsqueeze", labels, b.Ints(1))], Attr("axis", 1L));
            loss = b.Op("Neg", b.Op("ReduceMean", [picked], Attr("keepdims", 0L)));
            // ∂/∂z of −mean log softmax(z)[y] = (softmax(z) − onehot(y)) / B
            dLogits = b.Op("Mul", b.Op("Sub", b.Op("Exp", logProb), oneHot), b.Constant([1f / batchSize]));
        }
        else
        {
            var diff = b.Op("Sub", logits, oneHot);
            loss = b.Op("ReduceMean", [b.Op("Mul", diff, diff)], Attr("keepdims", 0L));
            dLogits = b.Op("Mul", diff, b.Constant([2f / (batchSize * classes)]));
        }

        result.LossOutput = b.UniqueName("loss");
        b.AddNode("Identity", [loss], [result.LossOutput]);
        b.AddOutput(result.LossOutput, TensorProto.Types.DataType.Float);

        var trainable = layout.Tensors.Where(t => t.Trainable).Select(t => t.Name).ToList();
        var grads = Backpropagation.Run(b, forward, shapes, new Dictionary<string, string> { [logits] = dLogits }, trainable);
        AddOptimizer(b, options, layout, grads, bufferUpdates, result);
        return result;
    }

    /// <summary>
    /// The inference graph with managed initializers turned into inputs and two scalar outputs for a
    /// batch of any size: the summed loss and the number of correct arg-max predictions.
    /// </summary>
    public static EvaluationGraph BuildEvaluation(ModelProto model, LossKind lossKind)
    {
        var layout = ModelLayout.Analyze(model);
        var eval = model.Clone();
        var graph = eval.Graph;
        var b = new GraphBuilder(graph, "fe");
        var managed = layout.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var kept = graph.Initializer.Where(t => !managed.Contains(t.Name)).ToList();
        graph.Initializer.Clear();
        graph.Initializer.AddRange(kept);
        var dataInput = graph.Input.First(i => i.Name == layout.InputName);
        graph.Input.Clear();
        graph.Input.Add(dataInput);
        dataInput.Type.TensorType.Shape.Dim[0].DimParam = "batch";
        foreach (var t in layout.Tensors)
        {
            b.AddInput(t.Name, TensorProto.Types.DataType.Float, [.. t.Dims.Cast<object>()]);
        }

        graph.Output.Clear();
        graph.ValueInfo.Clear();
        var logits = layout.OutputName;
        var labels = b.UniqueName("labels");
        b.AddInput(labels, TensorProto.Types.DataType.Int64, "batch");
        string lossSum;
        if (lossKind == LossKind.CrossEntropy)
        {
            var logProb = b.Op("LogSoftmax", [logits], Attr("axis", 1L));
            var picked = b.Op("GatherElements", [logProb, b.Op("Unsqueeze", labels, b.Ints(1))], Attr("axis", 1L));
            lossSum = b.Op("Neg", b.Op("ReduceSum", [picked], Attr("keepdims", 0L)));
        }
        else
        {
            // Sum over samples of the per-sample mean over classes, so that dividing by the count gives torch's MSELoss.
            var classes = b.Op("Gather", [b.Op("Shape", logits), b.Constant([1L])], Attr("axis", 0L));
            var oneHot = b.Op("OneHot", [labels, classes, b.Constant([0f, 1f], 2)], Attr("axis", -1L));
            var diff = b.Op("Sub", logits, oneHot);
            lossSum = b.Op("Div", b.Op("ReduceSum", [b.Op("Mul", diff, diff)], Attr("keepdims", 0L)),
                b.Op("Cast", [classes], Attr("to", (long)TensorProto.Types.DataType.Float)));
        }

        var predicted = b.Op("ArgMax", [logits], Attr("axis", 1L), Attr("keepdims", 0L));
        var correct = b.Op("ReduceSum", [b.Op("Cast", [b.Op("Equal", predicted, labels)], Attr("to", (long)TensorProto.Types.DataType.Int64)),
            b.Ints(0)], Attr("keepdims", 0L));
        var result = new EvaluationGraph(eval, layout, labels, b.UniqueName("loss_sum"), b.UniqueName("correct"));
        b.AddNode("Identity", [lossSum], [result.LossSumOutput]);
        b.AddNode("Identity", [correct], [result.CorrectOutput]);
        b.AddOutput(result.LossSumOutput, TensorProto.Types.DataType.Float);
        b.AddOutput(result.CorrectOutput, TensorProto.Types.DataType.Int64);
        return result;
    }

    /// <summary>
    /// The optimizer part alone, with each trainable tensor's gradient as an input (named in
    /// <see cref="TrainingGraph.GradientInputs"/>): zeroth-order training estimates gradients outside the
    /// graph and applies exactly the same update rule.
    /// </summary>
    public static TrainingGraph BuildOptimizerOnly(ModelProto model, TrainingOptions options)
    {
        options.Validate();
        var layout = ModelLayout.Analyze(model);
        var step = new ModelProto { IrVersion = 8, Graph = new GraphProto { Name = "fededge_optimizer" } };
        step.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = StepOpset });
        var b = new GraphBuilder(step.Graph, "fe");
        var grads = new Dictionary<string, string>(StringComparer.Ordinal);
        var gradInputs = new List<string?>();
        foreach (var t in layout.Tensors)
        {
            b.AddInput(t.Name, TensorProto.Types.DataType.Float, [.. t.Dims.Cast<object>()]);
            if (t.Trainable)
            {
                var g = b.UniqueName($"grad/{t.Name}");
                b.AddInput(g, TensorProto.Types.DataType.Float, [.. t.Dims.Cast<object>()]);
                grads[t.Name] = g;
                gradInputs.Add(g);
            }
            else
            {
                gradInputs.Add(null);
            }
        }

        var result = new TrainingGraph(step, layout, 0) { GradientInputs = gradInputs };
        AddOptimizer(b, options, layout, grads, [], result);
        return result;
    }

    private static void AddOptimizer(GraphBuilder b, TrainingOptions o, ModelLayout layout, IReadOnlyDictionary<string, string> grads,
        List<TrainingLowering.BufferUpdate> bufferUpdates, TrainingGraph result)
    {
        const TensorProto.Types.DataType F = TensorProto.Types.DataType.Float;
        string S(double v) => b.Constant([(float)v]);
        var g = new Dictionary<string, string>(grads, StringComparer.Ordinal);
        var anchors = new string?[layout.Tensors.Count];

        // 1. FedProx: ∇ μ/2·‖w − w_g‖² = μ·(w − w_g).
        if (o.ProximalMu > 0)
        {
            for (var i = 0; i < layout.Tensors.Count; i++)
            {
                var t = layout.Tensors[i];
                if (!g.TryGetValue(t.Name, out var grad))
                {
                    continue;
                }

                anchors[i] = b.UniqueName($"anchor/{t.Name}");
                b.AddInput(anchors[i]!, F, [.. t.Dims.Cast<object>()]);
                g[t.Name] = b.Op("Add", grad, b.Op("Mul", b.Op("Sub", t.Name, anchors[i]!), S(o.ProximalMu)));
            }
        }

        // 2. Global-norm clipping (torch.nn.utils.clip_grad_norm_): g ← g·min(1, max/(‖g‖ + 1e-6)).
        if (o.ClipNorm > 0 && g.Count > 0)
        {
            var squares = g.Values.Select(v => b.Op("ReduceSumSquare", [v], Attr("keepdims", 0L))).ToArray();
            var norm = b.Op("Sqrt", squares.Length == 1 ? squares[0] : b.Op("Sum", squares));
            var coef = b.Op("Min", S(1), b.Op("Div", S(o.ClipNorm), b.Op("Add", norm, S(1e-6))));
            foreach (var key in g.Keys.ToList())
            {
                g[key] = b.Op("Mul", g[key], coef);
            }
        }

        result.LearningRateInput = b.UniqueName("learning_rate");
        b.AddInput(result.LearningRateInput, F);
        if (o.Optimizer == OptimizerKind.Adam)
        {
            result.AdamCorrectionInput = b.UniqueName("adam_bias_correction");
            b.AddInput(result.AdamCorrectionInput, F);
        }

        var next = new string[layout.Tensors.Count];
        var state = new List<StateSlot>();
        var stateOffset = 0;
        StateSlot NewState(ManagedTensor t, string kind)
        {
            var slot = new StateSlot(b.UniqueName($"state/{kind}/{t.Name}"), b.UniqueName($"state_next/{kind}/{t.Name}"), t.Dims, stateOffset, t.Length);
            stateOffset += t.Length;
            b.AddInput(slot.Input, F, [.. t.Dims.Cast<object>()]);
            state.Add(slot);
            return slot;
        }

        var updatedBuffers = bufferUpdates.ToDictionary(u => u.Buffer, u => u.Updated, StringComparer.Ordinal);
        for (var i = 0; i < layout.Tensors.Count; i++)
        {
            var t = layout.Tensors[i];
            string value;
            if (!g.TryGetValue(t.Name, out var grad))
            {
                // Buffers take their updated statistics; parameters the loss does not depend on stay as they are.
                value = updatedBuffers.TryGetValue(t.Name, out var u) ? u : t.Name;
            }
            else
            {
                // 3. Weight decay (L2, as torch.optim): g ← g + λ·w.
                if (o.WeightDecay > 0)
                {
                    grad = b.Op("Add", grad, b.Op("Mul", t.Name, S(o.WeightDecay)));
                }

                switch (o.Optimizer)
                {
                    case OptimizerKind.Sgd:
                        value = b.Op("Sub", t.Name, b.Op("Mul", grad, result.LearningRateInput));
                        break;
                    case OptimizerKind.Momentum:
                        {
                            var m = NewState(t, "momentum");
                            b.AddNode("Add", [b.Op("Mul", m.Input, S(o.Momentum)), grad], [m.Output]);
                            value = b.Op("Sub", t.Name, b.Op("Mul", m.Output, result.LearningRateInput));
                            break;
                        }

                    default:
                        {
                            // Adam: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; w ← w − η/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
                            var m = NewState(t, "adam_m");
                            var v = NewState(t, "adam_v");
                            b.AddNode("Add", [b.Op("Mul", m.Input, S(o.AdamBeta1)), b.Op("Mul", grad, S(1 - o.AdamBeta1))], [m.Output]);
                            b.AddNode("Add", [b.Op("Mul", v.Input, S(o.AdamBeta2)), b.Op("Mul", b.Op("Mul", grad, grad), S(1 - o.AdamBeta2))], [v.Output]);
                            var denom = b.Op("Add", b.Op("Mul", b.Op("Sqrt", v.Output), result.AdamCorrectionInput!), S(o.AdamEpsilon));
                            value = b.Op("Sub", t.Name, b.Op("Mul", b.Op("Div", m.Output, denom), result.LearningRateInput));
                            break;
                        }
                }
            }

            next[i] = b.UniqueName($"next/{t.Name}");
            b.AddNode("Identity", [value], [next[i]]);
            b.AddOutput(next[i], F, [.. t.Dims.Cast<object>()]);
        }

        foreach (var slot in state)
        {
            b.AddOutput(slot.Output, F, [.. slot.Dims.Cast<object>()]);
        }

        result.NextOutputs = next;
        result.AnchorInputs = anchors;
        result.State = state;
    }
}
