using System.Text.Json;
using FedEdge.Edge.Storage;

namespace FedEdge.Edge;

/// <summary>
/// The agent's progress on disk (<c>agent.json</c>): the last model version it trained on, so that a restart
/// does not train the same version again and send a second update for it.
/// </summary>
internal sealed record AgentProgress(long LastTrainedVersion, long Rounds)
{
    public static AgentProgress Load(string path)
    {
        if (!File.Exists(path))
            return new AgentProgress(-1, 0);
        try
        {
            return JsonSerializer.Deserialize<AgentProgress>(File.ReadAllText(path)) ?? new AgentProgress(-1, 0);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Agent progress file '{path}' is corrupt ({e.Message}); delete it to start over.", e);
        }
    }

    public void Save(string path, bool fsync) => AtomicFile.WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(this), fsync);
}
