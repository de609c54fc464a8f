using FedEdge.Onnx.Proto;
using Google.Protobuf;

namespace FedEdge.Onnx;

/// <summary>
/// Appends nodes, constants, inputs and outputs to a <see cref="GraphProto"/>, inventing unique
/// value and node names so that generated subgraphs never collide with the names already in it.
/// </summary>
public sealed class GraphBuilder
{
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);
    private readonly string _prefix;
    private int _counter;

    public GraphBuilder(GraphProto graph, string prefix = "fe")
    {
        Graph = graph;
        _prefix = prefix;
        foreach (var node in graph.Node)
        {
            _names.UnionWith(node.Output);
            _names.UnionWith(node.Input);
            _names.Add(node.Name);
        }

        foreach (var v in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo))
        {
            _names.Add(v.Name);
        }

        foreach (var init in graph.Initializer)
        {
            _names.Add(init.Name);
        }
    }

    public GraphProto Graph { get; }

    /// <summary>A value or node name not yet used in the graph, derived from <paramref name="hint"/>.</summary>
    public string UniqueName(string hint)
    {
        var name = $"{_prefix}/{hint}";
        while (!_names.Add(name))
        {
            name = $"{_prefix}/{hint}_{++_counter}";
        }

        return name;
    }

    /// <summary>Reserves an exact name (e.g. a graph output) so generated names avoid it.</summary>
    public void Reserve(string name) => _names.Add(name);

    /// <summary>Adds a node with fresh output names and returns them.</summary>
    public string[] Node(string opType, IReadOnlyList<string> inputs, int outputCount, params AttributeProto[] attributes)
    {
        var outputs = new string[outputCount];
        for (var i = 0; i < outputCount; i++)
        {
            outputs[i] = UniqueName(opType);
        }

        AddNode(opType, inputs, outputs, attributes);
        return outputs;
    }

    /// <summary>Adds a node whose outputs have the given names.</summary>
    public NodeProto AddNode(string opType, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = UniqueName(opType + "_node") };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        foreach (var o in outputs)
        {
            _names.Add(o);
        }

        Graph.Node.Add(node);
        return node;
    }

    /// <summary>Adds a single-output node and returns its output name.</summary>
    public string Op(string opType, params string[] inputs) => Node(opType, inputs, 1)[0];

    /// <summary>Adds a single-output node with attributes and returns its output name.</summary>
    public string Op(string opType, string[] inputs, params AttributeProto[] attributes) => Node(opType, inputs, 1, attributes)[0];

    /// <summary>An int64 constant (an initializer; identical constants are shared).</summary>
    public string Constant(ReadOnlySpan<long> values, params long[] dims) =>
        Shared(TensorProtoExtensions.Create("c", values, dims));

    /// <summary>A float constant (an initializer; identical constants are shared).</summary>
    public string Constant(ReadOnlySpan<float> values, params long[] dims) =>
        Shared(TensorProtoExtensions.Create("c", values, dims));

    /// <summary>A double constant (an initializer; identical constants are shared).</summary>
    public string Constant(ReadOnlySpan<double> values, params long[] dims) =>
        Shared(TensorProtoExtensions.Create("c", values, dims));

    /// <summary>A 1-D int64 constant.</summary>
    public string Ints(params long[] values) => Constant(values, values.Length);

    /// <summary>A scalar of the given floating element type (float or double).</summary>
    public string Scalar(double value, TensorProto.Types.DataType type) => type switch
    {
        TensorProto.Types.DataType.Float => Constant([(float)value]),
        TensorProto.Types.DataType.Double => Constant([value]),
        TensorProto.Types.DataType.Int64 => Constant([(long)value]),
        _ => throw new ArgumentException($"Scalar constants of {type} are not supported."),
    };

    /// <summary>Adds an initializer under its own name (must be unused).</summary>
    public void AddInitializer(TensorProto tensor)
    {
        if (!_names.Add(tensor.Name) && Graph.Initializer.Any(t => t.Name == tensor.Name))
        {
            throw new ArgumentException($"Initializer '{tensor.Name}' already exists.");
        }

        Graph.Initializer.Add(tensor);
    }

    public static ValueInfoProto TensorInfo(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d switch
            {
                string s => new TensorShapeProto.Types.Dimension { DimParam = s },
                _ => new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d, System.Globalization.CultureInfo.InvariantCulture) },
            });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    public void AddInput(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        _names.Add(name);
        Graph.Input.Add(TensorInfo(name, type, dims));
    }

    public void AddOutput(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        _names.Add(name);
        Graph.Output.Add(TensorInfo(name, type, dims));
    }

    public static AttributeProto Attr(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Attr(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto Attr(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    public static AttributeProto Attr(string name, IEnumerable<long> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    public static AttributeProto Attr(string name, IEnumerable<float> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Floats };
        a.Floats.AddRange(values);
        return a;
    }

    public static AttributeProto Attr(string name, TensorProto value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };

    private string Shared(TensorProto tensor)
    {
        var key = $"{tensor.DataType}|{string.Join(',', tensor.Dims)}|{Convert.ToBase64String(tensor.RawData.Span)}";
        if (_constants.TryGetValue(key, out var existing))
        {
            return existing;
        }

        tensor.Name = UniqueName("const");
        Graph.Initializer.Add(tensor);
        _constants[key] = tensor.Name;
        return tensor.Name;
    }
}
