using FedEdge.Onnx;
using FedEdge.Onnx.Proto;

namespace FedEdge.Training.Zoo;

/// <summary>
/// FedEdge's built-in models, generated as ONNX inference graphs (input "input" [N, C, H, W] or
/// [N, F], output "logits" [N, classes]). Weights use PyTorch's default initialisation
/// (nn.Linear / nn.Conv2d: kaiming_uniform with a = √5, i.e. U(−1/√fan_in, 1/√fan_in) for
/// weights and biases), drawn from <c>new Random(seed)</c> in initializer order.
/// </summary>
public static class ModelZoo
{
    public const int Opset = 17;

    /// <summary>Names accepted by <see cref="Create"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["logreg", "mlp", "cnn", "femnist-cnn"];

    public static bool Contains(string name) => Names.Contains(name, StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Builds zoo model <paramref name="name"/> for samples of shape <paramref name="sampleShape"/>
    /// (e.g. [1, 28, 28]) and <paramref name="classes"/> outputs.
    /// </summary>
    /// <param name="inputMean">With <paramref name="inputStd"/>: the graph starts with (x − mean)/std, so the model
    /// carries its own input standardisation and is applied to raw features (constants, not trained).</param>
    public static ModelProto Create(string name, IReadOnlyList<int> sampleShape, int classes = 10, int seed = 0,
        float inputMean = 0f, float inputStd = 1f)
    {
        ArgumentNullException.ThrowIfNull(sampleShape);
        if (!(inputStd > 0) || !float.IsFinite(inputMean))
        {
            throw new ArgumentOutOfRangeException(nameof(inputStd), "Input standardisation needs a finite mean and a positive std.");
        }

        var net = new NetBuilder(sampleShape, seed);
        if (inputMean != 0f || inputStd != 1f)
        {
            net.Standardize(inputMean, inputStd);
        }

        switch (name.ToLowerInvariant())
        {
            case "logreg":
                net.Flatten().Linear(classes);
                break;
            case "mlp":
                net.Flatten().Linear(128).Relu().Linear(classes);
                break;
            case "cnn":
                // NIID-Bench "SimpleCNN" for 28x28 inputs: conv 6@5x5, pool, conv 16@5x5, pool, fc 120, 84, 10.
                net.Conv(6, 5, pad: 0).Relu().MaxPool(2).Conv(16, 5, pad: 0).Relu().MaxPool(2)
                    .Flatten().Linear(120).Relu().Linear(84).Relu().Linear(classes);
                break;
            case "femnist-cnn":
                // LEAF/FedAvg FEMNIST CNN: conv 32@5x5 'same', pool, conv 64@5x5 'same', pool, fc 2048, fc classes.
                net.Conv(32, 5, pad: 2).Relu().MaxPool(2).Conv(64, 5, pad: 2).Relu().MaxPool(2)
                    .Flatten().Linear(2048).Relu().Linear(classes);
                break;
            default:
                throw new ArgumentException($"Unknown zoo model '{name}'. Known: {string.Join(", ", Names)}.", nameof(name));
        }

        return net.Finish(name.ToLowerInvariant());
    }

    /// <summary>Sequential network builder that tracks the activation shape (without batch).</summary>
    private sealed class NetBuilder
    {
        private readonly ModelProto _model;
        private readonly GraphBuilder _b;
        private readonly Random _random;
        private long[] _shape;
        private string _value = "input";
        private int _layer;

        public NetBuilder(IReadOnlyList<int> sampleShape, int seed)
        {
            _random = new Random(seed);
            _shape = sampleShape.Select(d => (long)d).ToArray();
            _model = new ModelProto
            {
                IrVersion = 8,
                ProducerName = "FedEdge",
                Graph = new GraphProto { Name = "fededge" },
            };
            _model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
            _b = new GraphBuilder(_model.Graph, "zoo");
            _b.AddInput("input", TensorProto.Types.DataType.Float, ["N", .. _shape.Cast<object>()]);
        }

        public NetBuilder Standardize(float mean, float std)
        {
            _value = Emit("Div", [Emit("Sub", [_value, _b.Constant([mean])]), _b.Constant([std])]);
            return this;
        }

        public NetBuilder Flatten()
        {
            _value = Emit("Flatten", [_value], GraphBuilder.Attr("axis", 1L));
            _shape = [_shape.Aggregate(1L, (a, d) => a * d)];
            return this;
        }

        public NetBuilder Relu()
        {
            _value = Emit("Relu", [_value]);
            return this;
        }

        public NetBuilder Linear(int outFeatures)
        {
            if (_shape.Length != 1)
            {
                throw new InvalidOperationException("Linear needs a flat input.");
            }

            _layer++;
            var inFeatures = _shape[0];
            var w = Parameter($"fc{_layer}.weight", [outFeatures, inFeatures], inFeatures);
            var bias = Parameter($"fc{_layer}.bias", [outFeatures], inFeatures);
            _value = Emit("Gemm", [_value, w, bias], GraphBuilder.Attr("transB", 1L));
            _shape = [outFeatures];
            return this;
        }

        public NetBuilder Conv(int outChannels, int kernel, int pad)
        {
            if (_shape.Length != 3)
            {
                throw new ArgumentException($"Convolutional zoo models need samples shaped [C, H, W]; got [{string.Join(", ", _shape)}].");
            }

            _layer++;
            var fanIn = _shape[0] * kernel * kernel;
            var w = Parameter($"conv{_layer}.weight", [outChannels, _shape[0], kernel, kernel], fanIn);
            var bias = Parameter($"conv{_layer}.bias", [outChannels], fanIn);
            _value = Emit("Conv", [_value, w, bias],
                GraphBuilder.Attr("kernel_shape", new long[] { kernel, kernel }),
                GraphBuilder.Attr("pads", new long[] { pad, pad, pad, pad }));
            _shape = [outChannels, _shape[1] + 2 * pad - kernel + 1, _shape[2] + 2 * pad - kernel + 1];
            if (_shape[1] <= 0 || _shape[2] <= 0)
            {
                throw new ArgumentException("The input is too small for this convolutional model.");
            }

            return this;
        }

        public NetBuilder MaxPool(int size)
        {
            _value = Emit("MaxPool", [_value],
                GraphBuilder.Attr("kernel_shape", new long[] { size, size }),
                GraphBuilder.Attr("strides", new long[] { size, size }));
            _shape = [_shape[0], _shape[1] / size, _shape[2] / size];
            return this;
        }

        public ModelProto Finish(string name)
        {
            _model.Graph.Name = name;
            _model.Graph.Node.Last().Output[0] = "logits";
            _model.Graph.Output.Add(GraphBuilder.TensorInfo("logits", TensorProto.Types.DataType.Float, "N", _shape[0]));
            _model.DocString = $"FedEdge zoo model '{name}'.";
            return _model;
        }

        private string Emit(string op, string[] inputs, params AttributeProto[] attributes)
        {
            var output = _b.Node(op, inputs, 1, attributes)[0];
            return output;
        }

        private string Parameter(string name, long[] dims, long fanIn)
        {
            var count = (int)dims.Aggregate(1L, (a, d) => a * d);
            var bound = 1.0 / Math.Sqrt(fanIn);
            var values = new float[count];
            for (var i = 0; i < count; i++)
            {
                values[i] = (float)((_random.NextDouble() * 2 - 1) * bound);
            }

            _b.AddInitializer(TensorProtoExtensions.Create(name, values, dims));
            return name;
        }
    }
}
