using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Training.Autodiff;

/// <summary>Element type and concrete dimensions of one graph value.</summary>
public readonly record struct TensorShape(TensorProto.Types.DataType ElementType, long[] Dims)
{
    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);

    public bool IsFloating => ElementType is TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Double;

    public override string ToString() => $"{ElementType}[{string.Join(", ", Dims)}]";
}

/// <summary>
/// Concrete types and shapes of every value of a graph for one batch size. Gradient rules need
/// static shapes (to undo broadcasting, size transposed convolutions, reshape back); instead of
/// re-implementing ONNX shape inference for every op, FedEdge runs the forward graph once in ONNX
/// Runtime with every intermediate value exposed as an output and records what comes out. This
/// also covers whatever shape arithmetic an exporter emits.
/// </summary>
public sealed class ValueShapes
{
    private readonly Dictionary<string, TensorShape> _types = new(StringComparer.Ordinal);

    public TensorShape this[string name] => _types.TryGetValue(name, out var t)
        ? t
        : throw new KeyNotFoundException($"No shape known for value '{name}'.");

    public bool TryGet(string name, out TensorShape type) => _types.TryGetValue(name, out type);

    public void Set(string name, TensorShape type) => _types[name] = type;

    /// <summary>
    /// Runs <paramref name="graph"/> (with <paramref name="opsets"/>) once, feeding zeros of the given
    /// shapes to its inputs, and records every value's type and shape.
    /// </summary>
    public static ValueShapes Probe(GraphProto graph, IEnumerable<OperatorSetIdProto> opsets, IReadOnlyDictionary<string, TensorShape> inputs)
    {
        var shapes = new ValueShapes();
        foreach (var init in graph.Initializer)
        {
            shapes.Set(init.Name, new TensorShape(init.ElementType(), init.Dims.ToArray()));
        }

        foreach (var (name, type) in inputs)
        {
            shapes.Set(name, type);
        }

        var probe = new ModelProto { IrVersion = 8, Graph = graph.Clone() };
        probe.OpsetImport.AddRange(opsets);
        probe.Graph.Output.Clear();
        probe.Graph.ValueInfo.Clear();
        var outputs = new List<string>();
        foreach (var node in graph.Node)
        {
            foreach (var o in node.Output)
            {
                if (o.Length > 0 && !shapes.TryGet(o, out _) && !outputs.Contains(o))
                {
                    outputs.Add(o);
                    probe.Graph.Output.Add(new ValueInfoProto { Name = o });
                }
            }
        }

        if (outputs.Count == 0)
        {
            return shapes;
        }

        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, IntraOpNumThreads = 1 };
        using var session = CreateSession(probe, options);
        var feeds = new List<OrtValue>();
        try
        {
            var names = new List<string>();
            foreach (var (name, type) in inputs)
            {
                names.Add(name);
                feeds.Add(Zeros(type));
            }

            using var results = session.Run(new RunOptions(), names, feeds, outputs);
            for (var i = 0; i < outputs.Count; i++)
            {
                var info = results[i].GetTensorTypeAndShape();
                shapes.Set(outputs[i], new TensorShape((TensorProto.Types.DataType)(int)info.ElementDataType, info.Shape));
            }
        }
        finally
        {
            foreach (var f in feeds)
            {
                f.Dispose();
            }
        }

        return shapes;
    }

    /// <summary>Creates an ORT session, turning ORT's load errors into messages that name the model problem.</summary>
    internal static InferenceSession CreateSession(ModelProto model, SessionOptions options)
    {
        try
        {
            return new InferenceSession(model.ToByteArray(), options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new OnnxFormatException($"ONNX Runtime rejected the graph: {e.Message}", e);
        }
    }

    private static OrtValue Zeros(TensorShape type) => type.ElementType switch
    {
        TensorProto.Types.DataType.Float => OrtValue.CreateTensorValueFromMemory(new float[type.ElementCount], type.Dims),
        TensorProto.Types.DataType.Double => OrtValue.CreateTensorValueFromMemory(new double[type.ElementCount], type.Dims),
        TensorProto.Types.DataType.Int64 => OrtValue.CreateTensorValueFromMemory(new long[type.ElementCount], type.Dims),
        TensorProto.Types.DataType.Int32 => OrtValue.CreateTensorValueFromMemory(new int[type.ElementCount], type.Dims),
        _ => throw new NotSupportedException($"Cannot feed an input of type {type.ElementType}."),
    };
}
