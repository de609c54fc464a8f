using FedEdge.Onnx;
using FedEdge.Onnx.Proto;

namespace FedEdge.Training;

/// <summary>A float initializer the trainer manages, and where it lives in the flat parameter vector.</summary>
/// <param name="Trainable">False for buffers such as BatchNorm running statistics (updated, not trained).</param>
public sealed record ManagedTensor(string Name, long[] Dims, int Offset, int Length, bool Trainable);

/// <summary>
/// What the trainer needs to know about an inference model: its data input and sample shape, its
/// output, and the float initializers that form the flat parameter vector (in initializer order).
/// Scalar (rank-0) float initializers are treated as constants, not parameters: exporters emit them
/// for things like normalisation divisors, never for weights.
/// </summary>
public sealed class ModelLayout
{
    public const int MinOpset = 13;
    public const int MaxOpset = 21;

    private ModelLayout(string input, int[] sampleShape, string output, int classCount, List<ManagedTensor> tensors, long opset)
    {
        InputName = input;
        SampleShape = sampleShape;
        OutputName = output;
        ClassCount = classCount;
        Tensors = tensors;
        Opset = opset;
        ParameterCount = tensors.Count == 0 ? 0 : tensors[^1].Offset + tensors[^1].Length;
    }

    public string InputName { get; }

    /// <summary>Shape of one sample (the model input without its batch axis).</summary>
    public int[] SampleShape { get; }

    public int SampleSize => SampleShape.Aggregate(1, (a, d) => a * d);

    public string OutputName { get; }

    /// <summary>Classes (size of the output's last axis); -1 when the model does not declare it.</summary>
    public int ClassCount { get; internal set; }

    public IReadOnlyList<ManagedTensor> Tensors { get; }

    public int ParameterCount { get; }

    public long Opset { get; }

    /// <summary>
    /// Gives every BatchNormalization running statistic its own initializer. torch 1.13's exporter
    /// deduplicates equal initializers, so a fresh BatchNorm's running mean and variance (zeros, ones) arrive
    /// as Identity(bn.bias) and Identity(bn.weight): training would then overwrite a trained parameter with
    /// batch statistics, or the reverse. A statistic that is not an initializer of its own (reached through
    /// Identity nodes, or shared with any other use) becomes a copy under a new name, and the node reads that.
    /// Returns the number of statistics separated.
    /// </summary>
    public static int SeparateBatchNormStatistics(GraphProto graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var initializers = graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var identities = graph.Node.Where(n => n.OpType == "Identity" && string.IsNullOrEmpty(n.Domain) && n.Input.Count == 1)
            .ToDictionary(n => n.Output[0], n => n.Input[0], StringComparer.Ordinal);
        var uses = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var input in graph.Node.SelectMany(n => n.Input).Concat(graph.Output.Select(o => o.Name)))
        {
            uses[input] = uses.GetValueOrDefault(input) + 1;
        }

        var names = graph.Initializer.Select(t => t.Name).Concat(graph.Node.SelectMany(n => n.Output)).ToHashSet(StringComparer.Ordinal);
        var separated = 0;
        foreach (var node in graph.Node.Where(n => n.OpType == "BatchNormalization" && string.IsNullOrEmpty(n.Domain) && n.Input.Count >= 5))
        {
            for (var slot = 3; slot <= 4; slot++)
            {
                var value = node.Input[slot];
                var source = value;
                while (identities.TryGetValue(source, out var upstream))
                {
                    source = upstream;
                }

                if (!initializers.TryGetValue(source, out var tensor) || (source == value && uses.GetValueOrDefault(value) == 1))
                {
                    continue; // computed statistics, or already an initializer of their own
                }

                var baseName = $"{source}.{(slot == 3 ? "running_mean" : "running_var")}";
                var name = baseName;
                for (var k = 1; names.Contains(name); k++)
                {
                    name = $"{baseName}_{k}";
                }

                var copy = tensor.Clone();
                copy.Name = name;
                graph.Initializer.Add(copy);
                initializers[name] = copy;
                names.Add(name);
                uses[value] = uses.GetValueOrDefault(value) - 1;
                uses[name] = 1;
                node.Input[slot] = name;
                separated++;
            }
        }

        return separated;
    }

    public static ModelLayout Analyze(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var graph = model.Graph ?? throw new OnnxFormatException("The model has no graph.");
        var opset = model.DefaultOpset();
        if (opset is < MinOpset or > MaxOpset)
        {
            throw new OnnxFormatException(
                $"The model uses ONNX opset {opset}; FedEdge trains opsets {MinOpset}–{MaxOpset} (re-export with torch.onnx.export(opset_version=17)).");
        }

        var initializerNames = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var dataInputs = graph.Input.Where(i => !initializerNames.Contains(i.Name)).ToList();
        if (dataInputs.Count != 1)
        {
            throw new OnnxFormatException(
                $"The model must have exactly one data input (besides initializers); it has {dataInputs.Count}: {string.Join(", ", dataInputs.Select(i => i.Name))}.");
        }

        var input = dataInputs[0];
        var inputType = input.Type?.TensorType ?? throw new OnnxFormatException($"Model input '{input.Name}' is not a tensor.");
        if (inputType.ElemType != (int)TensorProto.Types.DataType.Float)
        {
            throw new OnnxFormatException($"Model input '{input.Name}' must be float32; it is {(TensorProto.Types.DataType)inputType.ElemType}.");
        }

        var dims = inputType.Shape?.Dim ?? throw new OnnxFormatException($"Model input '{input.Name}' has no declared shape.");
        if (dims.Count < 2)
        {
            throw new OnnxFormatException($"Model input '{input.Name}' must be [batch, ...]; it has rank {dims.Count}.");
        }

        var sample = new int[dims.Count - 1];
        for (var i = 1; i < dims.Count; i++)
        {
            if (!dims[i].HasDimValue || dims[i].DimValue <= 0)
            {
                throw new OnnxFormatException($"Model input '{input.Name}' axis {i} must have a fixed size (only the batch axis may be symbolic).");
            }

            sample[i - 1] = (int)dims[i].DimValue;
        }

        if (graph.Output.Count == 0)
        {
            throw new OnnxFormatException("The model has no outputs.");
        }

        var output = graph.Output[0];
        var outDims = output.Type?.TensorType?.Shape?.Dim;
        var classes = outDims is { Count: 2 } && outDims[1].HasDimValue ? (int)outDims[1].DimValue : -1;

        var bufferNames = graph.Node.Where(n => n.OpType == "BatchNormalization" && n.Input.Count >= 5)
            .SelectMany(n => new[] { n.Input[3], n.Input[4] }).ToHashSet(StringComparer.Ordinal);
        var tensors = new List<ManagedTensor>();
        var offset = 0L;
        foreach (var init in graph.Initializer)
        {
            if (init.DataType != (int)TensorProto.Types.DataType.Float || init.Dims.Count == 0)
            {
                continue;
            }

            var length = init.ElementCount();
            if (offset + length > int.MaxValue)
            {
                throw new OnnxFormatException("The model has more than 2^31 parameters.");
            }

            tensors.Add(new ManagedTensor(init.Name, init.Dims.ToArray(), (int)offset, (int)length, !bufferNames.Contains(init.Name)));
            offset += length;
        }

        return new ModelLayout(input.Name, sample, output.Name, classes, tensors, opset);
    }

    /// <summary>Copies <paramref name="model"/>'s float initializers into one flat vector in this layout's order,
    /// the coordinates that devices compress and the cloud aggregates.</summary>
    public void ReadParameters(ModelProto model, Span<float> parameters)
    {
        EnsureLength(parameters.Length);
        var byName = InitializersByName(model);
        foreach (var tensor in Tensors)
        {
            byName(tensor.Name).CopyFloatsTo(parameters.Slice(tensor.Offset, tensor.Length));
        }
    }

    /// <summary>Writes a flat vector in this layout's order back into <paramref name="model"/>'s initializers.</summary>
    public void WriteParameters(ModelProto model, ReadOnlySpan<float> parameters)
    {
        EnsureLength(parameters.Length);
        var byName = InitializersByName(model);
        foreach (var tensor in Tensors)
        {
            byName(tensor.Name).SetFloats(parameters.Slice(tensor.Offset, tensor.Length));
        }
    }

    private void EnsureLength(int length)
    {
        if (length != ParameterCount)
        {
            throw new ArgumentException($"{length} parameters given, the model has {ParameterCount}.");
        }
    }

    private static Func<string, TensorProto> InitializersByName(ModelProto model)
    {
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        return name => initializers.TryGetValue(name, out var tensor)
            ? tensor
            : throw new OnnxFormatException($"Initializer '{name}' named by the layout is missing.");
    }
}
