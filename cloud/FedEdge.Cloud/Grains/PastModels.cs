using FedEdge.Cloud.Models;
using FedEdge.Cloud.Storage;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// The global models of the last versions, in memory, for a strategy that mixes an update with the model it was trained
/// from (FedAsync: x_new = x_τ + Δ). At most <see cref="Limit"/> versions: an update staler than that is refused.
/// </summary>
public sealed class PastModels(int wanted)
{
    /// <summary>Past models kept at most (16 × 4·d bytes).</summary>
    public const int Limit = 16;

    private readonly Dictionary<long, float[]> _models = [];

    /// <summary>Versions kept before the current one.</summary>
    public int Count { get; } = Math.Clamp(wanted, 0, Limit);

    public void Keep(long version, float[] parameters)
    {
        if (Count == 0) return;
        _models[version] = parameters;
        _models.Remove(version - Count - 1);
    }

    public float[]? Find(long version) => _models.GetValueOrDefault(version);

    /// <summary>Reloads the kept versions from the model store (on activation).</summary>
    public async Task RestoreAsync(IReadOnlyList<VersionRecord> recent, long current, float[] parameters, FileSystemModelStore store, string owner, CancellationToken cancellationToken)
    {
        foreach (var record in recent.TakeLast(Count + 1))
        {
            if (record.Version == current) Keep(record.Version, parameters);
            else if (await store.GetAsync(record.ModelSha256, cancellationToken) is { } blob)
                Keep(record.Version, new OnnxParameterVector(blob, $"{owner} v{record.Version}").Read());
        }
    }
}
