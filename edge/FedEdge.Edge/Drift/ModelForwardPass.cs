using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge.Models;
using FedEdge.Edge.Training;
using FedEdge.Onnx;
using FedEdge.Training;

namespace FedEdge.Edge.Drift;

/// <summary>
/// Logits and per-sample losses of verified (cluster) models on local data, through one <see cref="ModelLogits"/>
/// session per graph: cluster models share the architecture, so switching between them only swaps the parameter
/// vector. Used once per window and model version (prototypes, FedRC losses), never per training step. Not thread-safe.
/// </summary>
public sealed class ModelForwardPass(int threads = 1) : IDisposable
{
    private const int Chunk = 512;
    private readonly Dictionary<int, (long Version, float[] Parameters)> _parameters = [];
    private ModelLogits? _logits;
    private byte[] _fingerprint = [];

    /// <summary>D: logits per sample of the last model used (0 before the first).</summary>
    public int OutputDimension => _logits?.ClassCount ?? 0;

    /// <summary>Prepares <paramref name="model"/> and returns its output width D.</summary>
    public int Load(VerifiedModel model)
    {
        Prepare(model);
        return _logits!.ClassCount;
    }

    /// <summary>Logits (count × D) of <paramref name="model"/> on the samples of <paramref name="data"/> at <paramref name="indices"/>.</summary>
    public float[] Logits(VerifiedModel model, Dataset data, ReadOnlySpan<int> indices)
    {
        var parameters = Prepare(model);
        var logits = _logits!;
        CheckShape(logits, data, model);
        var d = logits.ClassCount;
        var result = new float[indices.Length * d];
        var x = new float[Math.Min(Chunk, indices.Length) * data.SampleSize];
        var y = new long[Math.Min(Chunk, indices.Length)];
        for (var start = 0; start < indices.Length; start += Chunk)
        {
            var count = Math.Min(Chunk, indices.Length - start);
            data.CopyBatch(indices.Slice(start, count), x.AsSpan(0, count * data.SampleSize), y.AsSpan(0, count));
            logits.Compute(parameters, x.AsSpan(0, count * data.SampleSize), result.AsSpan(start * d, count * d));
        }
        return result;
    }

    /// <summary>Cross-entropy of <paramref name="model"/> on every sample of <paramref name="data"/> (n values).</summary>
    public float[] Losses(VerifiedModel model, Dataset data)
    {
        var parameters = Prepare(model);
        var logits = _logits!;
        CheckShape(logits, data, model);
        var d = logits.ClassCount;
        var n = data.Count;
        var losses = new float[n];
        var chunk = Math.Min(Chunk, n);
        var x = new float[chunk * data.SampleSize];
        var y = new long[chunk];
        var z = new float[chunk * d];
        for (var start = 0; start < n; start += Chunk)
        {
            var count = Math.Min(Chunk, n - start);
            data.CopyRange(start, count, x, y);
            logits.Compute(parameters, x.AsSpan(0, count * data.SampleSize), z);
            for (var i = 0; i < count; i++)
            {
                if ((ulong)y[i] >= (ulong)d)
                    throw new InvalidOperationException($"Label {y[i]} of local sample {start + i} is outside the {d} outputs of {Describe(model)}.");
            }
            LogitMath.CrossEntropy(z.AsSpan(0, count * d), y.AsSpan(0, count), losses.AsSpan(start, count));
        }
        return losses;
    }

    public void Dispose() => _logits?.Dispose();

    private float[] Prepare(VerifiedModel model)
    {
        var cluster = model.Announcement.Cluster;
        if (_logits is not null && _parameters.TryGetValue(cluster, out var cached) && cached.Version == model.Version)
            return cached.Parameters;
        var proto = OnnxModelFile.Parse(model.OnnxBytes.Span, Describe(model));
        var fingerprint = ModelGraph.Fingerprint(proto);
        if (_logits is null || !fingerprint.AsSpan().SequenceEqual(_fingerprint))
        {
            _logits?.Dispose();
            _logits = new ModelLogits(proto, threads);
            _fingerprint = fingerprint;
            _parameters.Clear();
        }
        var parameters = new float[_logits.ParameterCount];
        ModelLayout.Analyze(proto).ReadParameters(proto, parameters);
        _parameters[cluster] = (model.Version, parameters);
        return parameters;
    }

    private static void CheckShape(ModelLogits logits, Dataset data, VerifiedModel model)
    {
        if (logits.SampleSize != data.SampleSize)
            throw new InvalidOperationException($"{Describe(model)} takes samples of {logits.SampleSize} values; the local data has {data.SampleSize}.");
    }

    private static string Describe(VerifiedModel model) => $"cluster {model.Announcement.Cluster} model v{model.Version}";
}
