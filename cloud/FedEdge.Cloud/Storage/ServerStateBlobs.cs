using System.Runtime.InteropServices;
using FedEdge.Aggregation.Strategies;

namespace FedEdge.Cloud.Storage;

/// <summary>
/// A strategy's <see cref="ServerState"/> in the model store: each vector a float32 little-endian blob, addressed by its
/// SHA-256 (the federation's hot state keeps name → SHA-256). Content addressing makes a write idempotent, so a commit
/// that stops half-way leaves only unreferenced blobs.
/// </summary>
public static class ServerStateBlobs
{
    /// <summary>Writes the changed vectors; returns their SHA-256s by name.</summary>
    public static async Task<IReadOnlyList<(string Name, string Sha256)>> SaveAsync(FileSystemModelStore store,
        IReadOnlyList<(string Name, float[] Vector)> changed, CancellationToken cancellationToken = default)
    {
        var puts = changed.Select(async v => (v.Name, await store.PutAsync(MemoryMarshal.AsBytes(v.Vector.AsSpan()).ToArray(), cancellationToken)));
        return await Task.WhenAll(puts);
    }

    /// <summary>Restores every vector named in <paramref name="shas"/> into <paramref name="state"/>.</summary>
    public static async Task RestoreAsync(FileSystemModelStore store, IReadOnlyDictionary<string, string> shas, ServerState state,
        string owner, CancellationToken cancellationToken = default)
    {
        foreach (var (name, sha) in shas)
        {
            var blob = await store.GetAsync(sha, cancellationToken)
                ?? throw new InvalidDataException($"{owner}: server state '{name}' ({sha}) is missing from the model store");
            state.Restore(name, MemoryMarshal.Cast<byte, float>(blob));
        }
    }
}
