using System.Security.Cryptography;
using FedEdge.Onnx.Proto;
using Google.Protobuf;

namespace FedEdge.Edge.Training;

/// <summary>Identity of a model's graph apart from its weights.</summary>
internal static class ModelGraph
{
    /// <summary>SHA-256 over the graph's nodes, inputs and outputs: equal fingerprints mean only weights differ.</summary>
    public static byte[] Fingerprint(ModelProto proto)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var node in proto.Graph.Node)
            hash.AppendData(node.ToByteArray());
        foreach (var input in proto.Graph.Input)
            hash.AppendData(input.ToByteArray());
        foreach (var output in proto.Graph.Output)
            hash.AppendData(output.ToByteArray());
        return hash.GetHashAndReset();
    }
}
