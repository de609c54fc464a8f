namespace FedEdge.Onnx;

/// <summary>A file or byte buffer is not a valid ONNX model, or a model lacks something FedEdge needs.</summary>
public sealed class OnnxFormatException : Exception
{
    public OnnxFormatException(string message) : base(message) { }

    public OnnxFormatException(string message, Exception inner) : base(message, inner) { }
}
