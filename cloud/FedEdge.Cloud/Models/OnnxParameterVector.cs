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

    /// <summary>Values per input sample and model outputs (classes; ≤ 0 when the graph does not declare them).</summary>
    public ModelShape Shape => new(_layout.SampleSize, _layout.ClassCount);

    /// <summary>The template model's parameters as a flat vector.</summary>
    public float[] Read()
    {
        var parameters = new float[_layout.ParameterCount];
        _layout.ReadParameters(_template, parameters);
        return parameters;
    }

    /// <summary>The template model with <paramref name="parameters"/> written into its initializers, serialized.</summary>
    public byte[] Write(ReadOnlySpan<float> parameters)
    {
        var model = _template.Clone();
        _layout.WriteParameters(model, parameters);
        return model.ToByteArray();
    }
}

/// <summary>What a strategy may need of the model besides its parameter count: the inputs and outputs of a linear model
/// (FedMM's logistic surrogate).</summary>
public sealed record ModelShape(int FeatureCount, int ClassCount);
