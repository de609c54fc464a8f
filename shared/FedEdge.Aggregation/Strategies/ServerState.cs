namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// The server state of a federation that outlives one version: named float vectors (the centered-clipping centre,
/// FedOpt's moments, the EF21 estimate g, Byz-EF21's per-device estimates g_i). The aggregation changes them in place
/// and marks them; the host persists the marked ones with the version that changed them and restores every vector
/// (<see cref="Restore"/>) before it replays a pending contribution, so a restart or a move to another silo resumes
/// exactly where the last committed version left off.
/// </summary>
public sealed class ServerState
{
    private readonly Dictionary<string, float[]> _vectors = new(StringComparer.Ordinal);
    private readonly HashSet<string> _changed = new(StringComparer.Ordinal);

    /// <summary>Names of the vectors held.</summary>
    public IEnumerable<string> Names => _vectors.Keys;

    public bool TryGet(string name, out float[] vector) => _vectors.TryGetValue(name, out vector!);

    /// <summary>The vector called <paramref name="name"/>, created filled with <paramref name="initial"/> when absent.
    /// The caller changes it in place and calls <see cref="MarkChanged"/>.</summary>
    public float[] GetOrCreate(string name, int length, float initial = 0f)
    {
        if (_vectors.TryGetValue(name, out var vector))
        {
            if (vector.Length != length)
            {
                throw new InvalidDataException($"Server state '{name}' has {vector.Length} coordinates, the model {length}.");
            }

            return vector;
        }

        vector = new float[length];
        if (initial != 0f)
        {
            Array.Fill(vector, initial);
        }

        _vectors[name] = vector;
        return vector;
    }

    public void MarkChanged(string name) => _changed.Add(name);

    /// <summary>The vectors changed since the last call, for the host to persist; forgets the marks.</summary>
    public IReadOnlyList<(string Name, float[] Vector)> TakeChanged()
    {
        var changed = _changed.Select(name => (name, _vectors[name])).ToArray();
        _changed.Clear();
        return changed;
    }

    /// <summary>Sets a vector as persisted (on activation): not marked as changed.</summary>
    public void Restore(string name, ReadOnlySpan<float> vector) => _vectors[name] = vector.ToArray();
}
