using FedEdge.Onnx.Proto;
using Google.Protobuf;

namespace FedEdge.Onnx;

/// <summary>Reads and writes ONNX model files (protobuf <see cref="ModelProto"/>).</summary>
public static class OnnxModelFile
{
    /// <summary>Loads a model from <paramref name="path"/>; a file that is not ONNX gives an <see cref="OnnxFormatException"/>.</summary>
    public static ModelProto Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"ONNX model file '{path}' does not exist.", path);
        }

        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses a serialized model; <paramref name="source"/> names it in error messages.</summary>
    public static ModelProto Parse(ReadOnlySpan<byte> bytes, string source = "buffer")
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new OnnxFormatException($"'{source}' is not an ONNX model: {e.Message}", e);
        }

        // Protobuf accepts many byte strings (even empty ones) as a message with no fields set;
        // a real model always has an IR version, an opset and a graph with nodes or outputs.
        if (!model.HasIrVersion || model.Graph is null || model.OpsetImport.Count == 0 || model.Graph.Output.Count == 0)
        {
            throw new OnnxFormatException(
                $"'{source}' is not an ONNX model: it lacks an IR version, an opset import or a graph with outputs.");
        }

        return model;
    }

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> (atomically: temp file, then rename).</summary>
    public static void Save(ModelProto model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        var temp = path + ".tmp";
        using (var stream = File.Create(temp))
        {
            model.WriteTo(stream);
        }

        File.Move(temp, path, overwrite: true);
    }

    /// <summary>The model's version of the default ("ai.onnx") operator set.</summary>
    public static long DefaultOpset(this ModelProto model)
    {
        foreach (var opset in model.OpsetImport)
        {
            if (string.IsNullOrEmpty(opset.Domain) || opset.Domain == "ai.onnx")
            {
                return opset.Version;
            }
        }

        throw new OnnxFormatException("The model imports no default (ai.onnx) operator set.");
    }
}
