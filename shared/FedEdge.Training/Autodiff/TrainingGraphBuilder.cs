using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using Microsoft.ML.OnnxRuntime;
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

    /// <summary>
    /// Output holding each managed tensor's value after the step (same order as <see cref="ModelLayout.Tensors"/>);
    /// empty in flat graphs, which write <see cref="FlatNextOutput"/> instead.
    /// </summary>
    public IReadOnlyList<string> NextOutputs { get; internal set; } = [];

    /// <summary>
    /// Flat graphs (every managed tensor is trained): input bound to the whole parameter vector (the same memory
    /// as the per-tensor inputs), read by the update; null otherwise.
    /// </summary>
    public string? FlatParametersInput { get; internal set; }

    /// <summary>Flat graphs: output of the whole parameter vector after the step.</summary>
    public string? FlatNextOutput { get; internal set; }

    /// <summary>Flat graphs with a proximal term: the FedProx anchor as one vector.</summary>
    public string? FlatAnchorInput { get; internal set; }

    /// <summary>FedProx anchor input of each managed tensor (null where none: no proximal term or a buffer).</summary>
    public IReadOnlyList<string?> AnchorInputs { get; internal set; } = [];

    /// <summary>Optimizer state inputs/outputs; each slot's Offset/Length locate it in the state vector
    /// (<see cref="TrainingGraphBuilder.StateLength"/>).</summary>
    public IReadOnlyList<StateSlot> State { get; internal set; } = [];

    /// <summary>Optimizer-only graphs: the gradient input of each managed tensor (null for buffers).</summary>
    public IReadOnlyList<string?> GradientInputs { get; internal set; } = [];

    /// <summary>
    /// Gradient graphs (<see cref="TrainingGraphBuilder.BuildGradient"/>): output of the flat gradient vector (every
    /// managed tensor's gradient, flattened, in the parameter-vector order); null otherwise.
    /// </summary>
    public string? GradientOutput { get; internal set; }

    /// <summary>Flat update graphs (<see cref="TrainingGraphBuilder.BuildFlatUpdate"/>): the flat gradient inputs, summed by the update.</summary>
    public IReadOnlyList<string> FlatGradientInputs { get; internal set; } = [];

    /// <summary>Whether each managed tensor is a graph input of its own (false only in flat update graphs).</summary>
    public bool HasTensorInputs { get; internal set; } = true;

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

    public static TrainingGraph Build(ModelProto model, TrainingOptions options, int batchSize) =>
        BuildStep(model, options, batchSize, batchSize, gradientOnly: false)!;

    /// <summary>
    /// Forward, loss and gradients for one shard of a batch, without the optimizer: the loss is scaled by
    /// 1/<paramref name="totalBatchSize"/> (not by the shard's own size), so the shards' loss outputs and flat
    /// gradients (<see cref="TrainingGraph.GradientOutput"/>) add up to the whole batch's mean loss and gradient.
    /// Returns null when the flat gradient cannot be formed (a managed tensor is a buffer or gets no gradient).
    /// </summary>
    public static TrainingGraph? BuildGradient(ModelProto model, TrainingOptions options, int batchSize, int totalBatchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(totalBatchSize, batchSize);
        return BuildStep(model, options, batchSize, totalBatchSize, gradientOnly: true);
    }

    /// <summary>
    /// The flat optimizer update alone: <paramref name="gradientCount"/> flat gradient inputs
    /// (<see cref="TrainingGraph.FlatGradientInputs"/>) are summed, then FedProx, clipping, weight decay and the optimizer
    /// run exactly as in the flat step graph. Requires every managed tensor to be trainable.
    /// </summary>
    public static TrainingGraph BuildFlatUpdate(ModelProto model, TrainingOptions options, int gradientCount)
    {
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfLessThan(gradientCount, 1);
        var layout = ModelLayout.Analyze(model);
        if (layout.Tensors.Count == 0 || layout.Tensors.Any(t => !t.Trainable))
        {
            throw new InvalidOperationException("A flat update needs every managed tensor to be a trainable parameter.");
        }

        var update = new ModelProto { IrVersion = 8, Graph = new GraphProto { Name = "fededge_flat_update" } };
        update.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = StepOpset });
        var b = new GraphBuilder(update.Graph, "fe");
        var inputs = new string[gradientCount];
        for (var i = 0; i < gradientCount; i++)
        {
            inputs[i] = b.UniqueName($"gradient_{i}");
            b.AddInput(inputs[i], TensorProto.Types.DataType.Float, layout.ParameterCount);
        }

        var result = new TrainingGraph(update, layout, 0) { FlatGradientInputs = inputs, HasTensorInputs = false };
        var sum = gradientCount == 1 ? inputs[0] : gradientCount == 2 ? b.Op("Add", inputs[0], inputs[1]) : b.Op("Sum", inputs);
        AddOptimizer(b, options, layout, new Dictionary<string, string>(), [], result, sum);
        return result;
    }

    /// <summary>
    /// True when every sample's loss depends on that sample alone, so that a batch can be split into shards whose
    /// gradients add up exactly (<see cref="BuildGradient"/>): no batch statistics (BatchNorm buffers), no subgraphs, and
    /// every value computed from the data keeps the batch as its first axis. The last is checked by running the
    /// lowered forward graph for batches of 2 and 3: a value whose first axis is 2 and 3 respectively scales with the
    /// batch; anything else (e.g. a mean over the batch, or a Reshape that merges samples) couples samples.
    /// </summary>
    public static bool SamplesAreIndependent(ModelProto model, TrainingOptions options) =>
        SamplesAreIndependent(model, options, out _);

    /// <inheritdoc cref="SamplesAreIndependent(ModelProto, TrainingOptions)"/>
    /// <param name="activationsPerSample">Elements of the forward values computed from one sample (0 when not independent):
    /// a measure of the work per sample that the element-wise and pooling nodes do.</param>
    public static bool SamplesAreIndependent(ModelProto model, TrainingOptions options, out long activationsPerSample)
    {
        activationsPerSample = 0;
        var layout = ModelLayout.Analyze(model);
        if (layout.Tensors.Any(t => !t.Trainable)
            || model.Graph.Node.Any(n => n.OpType == "BatchNormalization" || n.Attribute.Any(a => a.G is not null || a.Graphs.Count > 0)))
        {
            return false;
        }

        ForwardGraph two, three;
        try
        {
            two = PrepareForward(model, options, 2);
            three = PrepareForward(model, options, 3);
        }
        catch (Exception e) when (e is OnnxRuntimeException or OnnxFormatException)
        {
            return false; // e.g. a graph written for one fixed batch size: it runs only as it is
        }

        var dependent = new HashSet<string>(StringComparer.Ordinal) { layout.InputName };
        long elements = 0;
        foreach (var node in two.Forward)
        {
            // Shape and Size carry the batch size, not sample values.
            if (node.OpType is "Shape" or "Size" || !node.Input.Any(dependent.Contains))
            {
                continue;
            }

            foreach (var output in node.Output.Where(o => o.Length > 0))
            {
                dependent.Add(output);
                if (!two.Shapes.TryGet(output, out var a) || !three.Shapes.TryGet(output, out var c)
                    || a.Dims.Length == 0 || c.Dims.Length == 0 || a.Dims[0] != 2 || c.Dims[0] != 3)
                {
                    return false;
                }

                elements += c.ElementCount - a.ElementCount;
            }
        }

        activationsPerSample = elements;
        return true;
    }

    /// <summary>The lowered forward graph with managed tensors as inputs, probed for one batch size.</summary>
    private sealed record ForwardGraph(ModelProto Step, GraphBuilder Builder, ModelLayout Layout, ValueShapes Shapes,
        List<NodeProto> Forward, List<TrainingLowering.BufferUpdate> BufferUpdates);

    private static ForwardGraph PrepareForward(ModelProto model, TrainingOptions options, int batchSize)
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
        return new ForwardGraph(step, b, layout, shapes, graph.Node.ToList(), bufferUpdates);
    }

    private static TrainingGraph? BuildStep(ModelProto model, TrainingOptions options, int batchSize, int lossBatchSize, bool gradientOnly)
    {
        var (step, b, layout, shapes, forward, bufferUpdates) = PrepareForward(model, options, batchSize);
        var logits = layout.OutputName;
        var logitDims = shapes[logits].Dims;
        if (logitDims.Length != 2 || logitDims[0] != batchSize)
        {
            throw new OnnxFormatException(
                $"The model output '{logits}' must be [batch, classes]; for a batch of {batchSize} it is [{string.Join(", ", logitDims)}].");
        }

        var classes = logitDims[1];
        layout.ClassCount = (int)classes;
        var result = new TrainingGraph(step, layout, batchSize);

        // Loss and its gradient w.r.t. the logits, written directly (cheaper than differentiating the loss ops).
        // Means are over lossBatchSize samples: the batch itself, or the whole batch a shard belongs to.
        var labels = b.UniqueName("labels");
        b.AddInput(labels, TensorProto.Types.DataType.Int64, batchSize);
        result.LabelsInput = labels;
        string loss, dLogits;
        if (options.Loss == LossKind.CrossEntropy)
        {
            // With t = −onehot(y)/B (one OneHot node): loss = −mean log softmax(z)[y] = Σ t ⊙ log softmax(z), and
            // ∂loss/∂z = (softmax(z) − onehot(y)) / B = exp(log softmax(z))/B + t. Two nodes fewer than
            // GatherElements + ReduceMean + Neg (+ Unsqueeze of the labels).
            var target = b.Op("OneHot", [labels, b.Constant([classes]), b.Constant([0f, -1f / lossBatchSize], 2)], Attr("axis", -1L));
            var logProb = b.Op("LogSoftmax", [logits], Attr("axis", 1L));
            loss = b.Op("ReduceSum", [b.Op("Mul", target, logProb)], Attr("keepdims", 0L));
            dLogits = b.Op("Add", b.Op("Mul", b.Op("Exp", logProb), b.Constant([1f / lossBatchSize])), target);
        }
        else
        {
            var oneHot = b.Op("OneHot", [labels, b.Constant([classes]), b.Constant([0f, 1f], 2)], Attr("axis", -1L));
            var diff = b.Op("Sub", logits, oneHot);
            var squares = b.Op("Mul", diff, diff);
            loss = lossBatchSize == batchSize
                ? b.Op("ReduceMean", [squares], Attr("keepdims", 0L))
                : b.Op("Mul", b.Op("ReduceSum", [squares], Attr("keepdims", 0L)), b.Constant([1f / (lossBatchSize * classes)]));
            dLogits = b.Op("Mul", diff, b.Constant([2f / (lossBatchSize * classes)]));
        }

        result.LossOutput = b.UniqueName("loss");
        b.AddNode("Identity", [loss], [result.LossOutput]);
        b.AddOutput(result.LossOutput, TensorProto.Types.DataType.Float);

        var trainable = layout.Tensors.Where(t => t.Trainable).Select(t => t.Name).ToList();
        var grads = Backpropagation.Run(b, forward, shapes, new Dictionary<string, string> { [logits] = dLogits }, trainable);
        if (!gradientOnly)
        {
            AddOptimizer(b, options, layout, grads, bufferUpdates, result);
            return result;
        }

        if (layout.Tensors.Count == 0 || layout.Tensors.Any(t => !t.Trainable || !grads.ContainsKey(t.Name)))
        {
            return null;
        }

        result.GradientOutput = b.UniqueName("gradient");
        b.AddNode("Identity", [FlatGradient(b, layout, grads)], [result.GradientOutput]);
        b.AddOutput(result.GradientOutput, TensorProto.Types.DataType.Float, layout.ParameterCount);
        result.AnchorInputs = new string?[layout.Tensors.Count];
        return result;
    }

    /// <summary>Every managed tensor's gradient flattened and concatenated in the parameter-vector order.</summary>
    private static string FlatGradient(GraphBuilder b, ModelLayout layout, IReadOnlyDictionary<string, string> grads)
    {
        var pieces = layout.Tensors.Select(t => t.Dims.Length == 1 ? grads[t.Name] : b.Op("Reshape", grads[t.Name], b.Ints(-1))).ToArray();
        return pieces.Length == 1 ? pieces[0] : b.Op("Concat", pieces, Attr("axis", 0L));
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

    /// <summary>Optimizer state tensors per trainable value: momentum 1, Adam 2 (m, v), SGD 0.</summary>
    public static int StateKinds(OptimizerKind optimizer) => optimizer switch { OptimizerKind.Momentum => 1, OptimizerKind.Adam => 2, _ => 0 };

    /// <summary>
    /// Length of the optimizer state vector: <see cref="StateKinds"/> blocks, each as long as the trainable
    /// tensors together; a trainable tensor's state sits at the same position in every block (its offset among
    /// the trainable tensors), so a flat and a per-tensor step graph share one state layout.
    /// </summary>
    public static int StateLength(TrainingOptions options, ModelLayout layout) =>
        StateKinds(options.Optimizer) * layout.Tensors.Where(t => t.Trainable).Sum(t => t.Length);

    /// <summary>One vector the optimizer updates: a single tensor, or (flat graphs) the whole parameter vector.</summary>
    private sealed record UpdateTarget(string Weight, string Gradient, long[] Dims, int TrainableOffset, string Label, int TensorIndex);

    private static void AddOptimizer(GraphBuilder b, TrainingOptions o, ModelLayout layout, IReadOnlyDictionary<string, string> grads,
        List<TrainingLowering.BufferUpdate> bufferUpdates, TrainingGraph result, string? flatGradient = null)
    {
        const TensorProto.Types.DataType F = TensorProto.Types.DataType.Float;
        string S(double v) => b.Constant([(float)v]);
        var trainableOffsets = new Dictionary<string, int>(StringComparer.Ordinal);
        var trainableLength = 0;
        foreach (var t in layout.Tensors.Where(t => t.Trainable))
        {
            trainableOffsets[t.Name] = trainableLength;
            trainableLength += t.Length;
        }

        // Flat form when every managed tensor is a trained parameter: the update runs once over the whole vector
        // (one Concat of the gradients, then a handful of ops) instead of 4–6 small ops per tensor, whose
        // per-node dispatch dominated the update of the zoo cnn's ten tensors at batch 64.
        var flat = flatGradient is not null || (layout.Tensors.Count > 0 && layout.Tensors.All(t => t.Trainable && grads.ContainsKey(t.Name)));
        var targets = new List<UpdateTarget>();
        if (flat)
        {
            long[] dims = [layout.ParameterCount];
            result.FlatParametersInput = b.UniqueName("parameters");
            b.AddInput(result.FlatParametersInput, F, layout.ParameterCount);
            var gradient = flatGradient ?? FlatGradient(b, layout, grads);
            targets.Add(new UpdateTarget(result.FlatParametersInput, gradient, dims, 0, "parameters", -1));
        }
        else
        {
            targets.AddRange(layout.Tensors.Select((t, i) => (t, i)).Where(p => grads.ContainsKey(p.t.Name))
                .Select(p => new UpdateTarget(p.t.Name, grads[p.t.Name], p.t.Dims, trainableOffsets[p.t.Name], p.t.Name, p.i)));
        }

        var g = targets.Select(t => t.Gradient).ToArray();

        // 1. FedProx: ∇ μ/2·‖w − w_g‖² = μ·(w − w_g).
        var anchors = new string?[layout.Tensors.Count];
        if (o.ProximalMu > 0)
        {
            for (var i = 0; i < targets.Count; i++)
            {
                var anchor = b.UniqueName($"anchor/{targets[i].Label}");
                b.AddInput(anchor, F, [.. targets[i].Dims.Cast<object>()]);
                if (flat)
                {
                    result.FlatAnchorInput = anchor;
                }
                else
                {
                    anchors[targets[i].TensorIndex] = anchor;
                }

                g[i] = b.Op("Add", g[i], b.Op("Mul", b.Op("Sub", targets[i].Weight, anchor), S(o.ProximalMu)));
            }
        }

        // 2. Global-norm clipping (torch.nn.utils.clip_grad_norm_): g ← g·min(1, max/(‖g‖ + 1e-6)).
        if (o.ClipNorm > 0 && g.Length > 0)
        {
            var squares = g.Select(v => b.Op("ReduceSumSquare", [v], Attr("keepdims", 0L))).ToArray();
            var norm = b.Op("Sqrt", squares.Length == 1 ? squares[0] : b.Op("Sum", squares));
            var coef = b.Op("Min", S(1), b.Op("Div", S(o.ClipNorm), b.Op("Add", norm, S(1e-6))));
            for (var i = 0; i < g.Length; i++)
            {
                g[i] = b.Op("Mul", g[i], coef);
            }
        }

        result.LearningRateInput = b.UniqueName("learning_rate");
        b.AddInput(result.LearningRateInput, F);
        if (o.Optimizer == OptimizerKind.Adam)
        {
            result.AdamCorrectionInput = b.UniqueName("adam_bias_correction");
            b.AddInput(result.AdamCorrectionInput, F);
        }

        var state = new List<StateSlot>();
        StateSlot NewState(UpdateTarget t, string kind, int block)
        {
            var length = (int)t.Dims.Aggregate(1L, (x, y) => x * y);
            var slot = new StateSlot(b.UniqueName($"state/{kind}/{t.Label}"), b.UniqueName($"state_next/{kind}/{t.Label}"), t.Dims,
                block * trainableLength + t.TrainableOffset, length);
            b.AddInput(slot.Input, F, [.. t.Dims.Cast<object>()]);
            state.Add(slot);
            return slot;
        }

        var updated = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < targets.Count; i++)
        {
            var t = targets[i];
            var grad = g[i];

            // 3. Weight decay (L2, as torch.optim): g ← g + λ·w.
            if (o.WeightDecay > 0)
            {
                grad = b.Op("Add", grad, b.Op("Mul", t.Weight, S(o.WeightDecay)));
            }

            switch (o.Optimizer)
            {
                case OptimizerKind.Sgd:
                    updated[t.Weight] = b.Op("Sub", t.Weight, b.Op("Mul", grad, result.LearningRateInput));
                    break;
                case OptimizerKind.Momentum:
                    {
                        var m = NewState(t, "momentum", 0);
                        b.AddNode("Add", [b.Op("Mul", m.Input, S(o.Momentum)), grad], [m.Output]);
                        updated[t.Weight] = b.Op("Sub", t.Weight, b.Op("Mul", m.Output, result.LearningRateInput));
                        break;
                    }

                default:
                    {
                        // Adam: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; w ← w − η/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
                        var m = NewState(t, "adam_m", 0);
                        var v = NewState(t, "adam_v", 1);
                        b.AddNode("Add", [b.Op("Mul", m.Input, S(o.AdamBeta1)), b.Op("Mul", grad, S(1 - o.AdamBeta1))], [m.Output]);
                        b.AddNode("Add", [b.Op("Mul", v.Input, S(o.AdamBeta2)), b.Op("Mul", b.Op("Mul", grad, grad), S(1 - o.AdamBeta2))], [v.Output]);
                        var denom = b.Op("Add", b.Op("Mul", b.Op("Sqrt", v.Output), result.AdamCorrectionInput!), S(o.AdamEpsilon));
                        updated[t.Weight] = b.Op("Sub", t.Weight, b.Op("Mul", b.Op("Div", m.Output, denom), result.LearningRateInput));
                        break;
                    }
            }
        }

        if (flat)
        {
            result.FlatNextOutput = b.UniqueName("next/parameters");
            b.AddNode("Identity", [updated[result.FlatParametersInput!]], [result.FlatNextOutput]);
            b.AddOutput(result.FlatNextOutput, F, layout.ParameterCount);
            result.NextOutputs = [];
        }
        else
        {
            // Buffers take their updated statistics; parameters the loss does not depend on stay as they are.
            var updatedBuffers = bufferUpdates.ToDictionary(u => u.Buffer, u => u.Updated, StringComparer.Ordinal);
            var next = new string[layout.Tensors.Count];
            for (var i = 0; i < layout.Tensors.Count; i++)
            {
                var t = layout.Tensors[i];
                var value = updated.TryGetValue(t.Name, out var w) ? w : updatedBuffers.TryGetValue(t.Name, out var u) ? u : t.Name;
                next[i] = b.UniqueName($"next/{t.Name}");
                b.AddNode("Identity", [value], [next[i]]);
                b.AddOutput(next[i], F, [.. t.Dims.Cast<object>()]);
            }

            result.NextOutputs = next;
        }

        foreach (var slot in state)
        {
            b.AddOutput(slot.Output, F, [.. slot.Dims.Cast<object>()]);
        }

        result.AnchorInputs = anchors;
        result.State = state;
    }
}
