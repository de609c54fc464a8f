using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Training;
using Google.Protobuf;

namespace FedEdge.Cloud.Models;

/// <summary>
/// Moves a model's parameters between its ONNX initializers and the flat vector the aggregation works on,
/// in the training engine's layout (<see cref="ModelLayout"/>: float initializers in order), so the cloud,
/// the devices and the trainer agree on what coordinate i means.
/// </summary>
public sealed class OnnxParameterVector
{
    private readonly ModelProto _template;
    private readonly ModelLayout _layout;

    public OnnxParameterVector(ReadOnlySpan<byte> onnxModel, string source = "model")
    {
        _template = OnnxModelFile.Parse(onnxModel, source);
        _layout = ModelLayout.Analyze(_template);
        if (_layout.ParameterCount == 0) throw new OnnxFormatException($"{source}: the model has no float parameters to federate.");
    }

    public int ParameterCount => _layout.ParameterCount;

    /// <summary>The template model's parameters as a flat vector.</summary>
    public float[] Read()
    {
        var parameters = new float[_layout.ParameterCount];
        foreach (var tensor in _layout.Tensors)
            Initializer(tensor.Name).CopyFloatsTo(parameters.AsSpan(tensor.Offset, tensor.Length));
        return parameters;
    }

    /// <summary>The template model with <paramref name="parameters"/> written into its initializers, serialized.</summary>
    public byte[] Write(ReadOnlySpan<float> parameters)
    {
        if (parameters.Length != _layout.ParameterCount)
            throw new ArgumentException($"{parameters.Length} parameters given, the model has {_layout.ParameterCount}.", nameof(parameters));
        var model = _template.Clone();
        var byName = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var tensor in _layout.Tensors)
            byName[tensor.Name].SetFloats(parameters.Slice(tensor.Offset, tensor.Length));
        return model.ToByteArray();
    }

    private TensorProto Initializer(string name) =>
        _template.Graph.Initializer.FirstOrDefault(t => t.Name == name)
        ?? throw new OnnxFormatException($"Initializer '{name}' named by the layout is missing.");
}
