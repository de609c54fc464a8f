using FedEdge.Onnx.Proto;

namespace FedEdge.Onnx;

/// <summary>Reads a node's attributes with defaults.</summary>
public static class NodeAttributes
{
    public static AttributeProto? Find(this NodeProto node, string name) =>
        node.Attribute.FirstOrDefault(a => a.Name == name);

    public static long GetInt(this NodeProto node, string name, long fallback) =>
        node.Find(name) is { } a ? a.I : fallback;

    public static float GetFloat(this NodeProto node, string name, float fallback) =>
        node.Find(name) is { } a ? a.F : fallback;

    public static string GetString(this NodeProto node, string name, string fallback) =>
        node.Find(name) is { } a ? a.S.ToStringUtf8() : fallback;

    public static long[]? GetInts(this NodeProto node, string name) =>
        node.Find(name) is { } a ? a.Ints.ToArray() : null;

    /// <summary>"OpType 'name'" for error messages.</summary>
    public static string Describe(this NodeProto node) =>
        string.IsNullOrEmpty(node.Name) ? $"{node.OpType} (output '{node.Output.FirstOrDefault()}')" : $"{node.OpType} '{node.Name}'";
}
