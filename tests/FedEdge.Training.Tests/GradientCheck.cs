using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Training.Autodiff;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using DataType = FedEdge.Onnx.Proto.TensorProto.Types.DataType;

namespace FedEdge.Training.Tests;

/// <summary>
/// Compares the engine's gradients of L = Σ Y ⊙ R (R a fixed random tensor) with central finite differences
/// (L(w + εe_j) − L(w − εe_j)) / 2ε, both computed with ONNX Runtime.
/// </summary>
internal sealed class GradientCheck
{
    private readonly GraphProto _graph = new() { Name = "check" };
    private readonly Dictionary<string, double[]> _values = [];
    private readonly Dictionary<string, long[]> _dims = [];
    private readonly Random _random;

    public GradientCheck(DataType type, int seed = 1)
    {
        Type = type;
        _random = new Random(seed);
        Builder = new GraphBuilder(_graph, "t");
    }

    public DataType Type { get; }

    public GraphBuilder Builder { get; }

    /// <summary>Inputs whose gradients are checked.</summary>
    public List<string> Inputs { get; } = [];

    /// <summary>When true, the graph is lowered as for training (BatchNormalization) before differentiation.</summary>
    public bool LowerForTraining { get; set; }

    /// <summary>A checked input with values uniform in [low, high).</summary>
    public string Input(string name, long[] dims, double low = -1, double high = 1)
    {
        var count = dims.Aggregate(1L, (a, d) => a * d);
        var values = new double[count];
        for (var i = 0; i < count; i++)
        {
            values[i] = low + (high - low) * _random.NextDouble();
        }

        _values[name] = values;
        _dims[name] = dims;
        Inputs.Add(name);
        return name;
    }

    /// <summary>A constant of the check's element type.</summary>
    public string Constant(double[] values, params long[] dims) =>
        Type == DataType.Double ? Builder.Constant(values, dims) : Builder.Constant(values.Select(v => (float)v).ToArray(), dims);

    /// <summary>A checked input with the given values.</summary>
    public string Input(string name, long[] dims, double[] values)
    {
        _values[name] = values;
        _dims[name] = dims;
        Inputs.Add(name);
        return name;
    }

    /// <summary>The engine's gradient of Σ output·seed with respect to each input (no finite differences).</summary>
    public List<double[]> Gradients(string output, double[] seed)
    {
        var (forwardSession, gradSession, analytic, _) = Prepare(output, seed);
        forwardSession.Dispose();
        gradSession.Dispose();
        return analytic;
    }

    public void Run(string output, double epsilon, double rtol, double atol, int samplesPerInput = 16)
    {
        var (forwardSession, gradSession, analytic, r) = Prepare(output, null);
        using var forwardOwner = forwardSession;
        using var gradOwner = gradSession;
        double Loss()
        {
            var y = Evaluate(forwardSession, [output])[0];
            return y.Zip(r, (a, b) => a * b).Sum();
        }

        for (var k = 0; k < Inputs.Count; k++)
        {
            var values = _values[Inputs[k]];
            var indices = Enumerable.Range(0, values.Length).OrderBy(_ => _random.Next()).Take(samplesPerInput);
            foreach (var j in indices)
            {
                var saved = values[j];
                values[j] = saved + epsilon;
                var plus = Loss();
                values[j] = saved - epsilon;
                var minus = Loss();
                values[j] = saved;
                var numeric = (plus - minus) / (2 * epsilon);
                var a = analytic[k][j];
                Assert.True(Math.Abs(a - numeric) <= atol + rtol * Math.Abs(numeric),
                    $"d/d{Inputs[k]}[{j}]: engine {a:G9}, finite difference {numeric:G9}");
            }
        }
    }

    private (InferenceSession Forward, InferenceSession Grad, List<double[]> Analytic, double[] Seed) Prepare(string output, double[]? seed)
    {
        var opsets = new[] { new OperatorSetIdProto { Domain = "", Version = 17 } };
        foreach (var name in Inputs)
        {
            _graph.Input.Add(GraphBuilder.TensorInfo(name, Type, [.. _dims[name].Cast<object>()]));
        }

        if (LowerForTraining)
        {
            TrainingLowering.Lower(Builder, seed: 0);
        }

        var forward = _graph.Clone();
        forward.Output.Add(new ValueInfoProto { Name = output });
        var shapes = ValueShapes.Probe(_graph, opsets, Inputs.ToDictionary(n => n, n => new TensorShape(Type, _dims[n])));
        var yDims = shapes[output].Dims;
        var r = seed ?? new double[yDims.Aggregate(1L, (a, d) => a * d)];
        if (seed is null)
        {
            for (var i = 0; i < r.Length; i++)
            {
                r[i] = _random.NextDouble() * 2 - 1;
            }
        }

        var seedName = Constant(r, yDims);
        var gradGraph = _graph;
        var nodes = gradGraph.Node.ToList();
        var grads = Backpropagation.Run(Builder, nodes, shapes, new Dictionary<string, string> { [output] = seedName }, Inputs);
        foreach (var name in Inputs)
        {
            Assert.True(grads.ContainsKey(name), $"no gradient for {name}");
            gradGraph.Output.Add(new ValueInfoProto { Name = grads[name] });
        }

        forward.Initializer.Clear();
        forward.Initializer.AddRange(gradGraph.Initializer.Where(t => forward.Node.Any(n => n.Input.Contains(t.Name))));
        var forwardSession = Session(forward, opsets);
        var gradSession = Session(gradGraph, opsets);
        return (forwardSession, gradSession, Evaluate(gradSession, [.. Inputs.Select(n => grads[n])]), r);
    }

    private static InferenceSession Session(GraphProto graph, OperatorSetIdProto[] opsets)
    {
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.AddRange(opsets);
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, IntraOpNumThreads = 1 };
        return new InferenceSession(model.ToByteArray(), options);
    }

    private List<double[]> Evaluate(InferenceSession session, string[] outputs)
    {
        var feeds = Inputs.Select(n => Type == DataType.Double
            ? OrtValue.CreateTensorValueFromMemory((double[])_values[n].Clone(), _dims[n])
            : OrtValue.CreateTensorValueFromMemory(_values[n].Select(v => (float)v).ToArray(), _dims[n])).ToList();
        try
        {
            using var results = session.Run(new RunOptions(), Inputs, feeds, outputs);
            return [.. results.Select(v => v.GetTensorTypeAndShape().ElementDataType == TensorElementType.Double
                ? v.GetTensorDataAsSpan<double>().ToArray()
                : v.GetTensorDataAsSpan<float>().ToArray().Select(f => (double)f).ToArray())];
        }
        finally
        {
            feeds.ForEach(f => f.Dispose());
        }
    }
}
