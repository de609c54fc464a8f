using System.Text.Json;
using FedEdge.Storage;

namespace FedEdge.Edge;

/// <summary>
/// The agent's progress on disk (<c>agent.json</c>): the last model version it trained on, so that a restart
/// does not train the same version again and send a second update for it; in a clustered federation (FedDAA) the same
/// per cluster model in <see cref="ClusterVersions"/> (cluster 0 stays in <see cref="LastTrainedVersion"/>), and in
/// <see cref="DeclinedEpochs"/> which of those versions it declined, in which assignment epoch.
/// With drift monitoring it also keeps the last judged data window and FedDAA's training-data choice for it, so a restart
/// neither judges (and reports) the same window change again nor forgets that real drift dropped the old window.
/// </summary>
internal sealed record AgentProgress(long LastTrainedVersion, long Rounds, Dictionary<int, long>? ClusterVersions = null,
    long DriftJudgedWindow = -1, FedEdge.Drift.TrainingWindow DriftTrainingWindow = FedEdge.Drift.TrainingWindow.CurrentOnly,
    Dictionary<int, long>? DeclinedEpochs = null)
{
    /// <summary>
    /// The assignment epoch in which the device declined <see cref="LastTrained"/>(<paramref name="cluster"/>) (no
    /// sample drew it), or null when that version was trained. A newer epoch brings new priors, so the version is
    /// planned again: an update then replaces the decline in the cloud's round.
    /// </summary>
    public long? DeclinedInEpoch(int cluster) => DeclinedEpochs is { } d && d.TryGetValue(cluster, out var epoch) ? epoch : null;

    /// <summary>This progress after declining <paramref name="version"/> of cluster <paramref name="cluster"/> &gt; 0 in assignment epoch <paramref name="epoch"/>.</summary>
    public AgentProgress Declined(int cluster, long version, long epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cluster);
        var done = Trained(cluster, version, counted: false);
        var declined = DeclinedEpochs is null ? [] : new Dictionary<int, long>(DeclinedEpochs);
        declined[cluster] = epoch;
        return done with { DeclinedEpochs = declined };
    }

    /// <summary>Last trained version of cluster model <paramref name="cluster"/> (−1: none).</summary>
    public long LastTrained(int cluster) =>
        cluster == 0 ? LastTrainedVersion : ClusterVersions?.GetValueOrDefault(cluster, -1) ?? -1;

    /// <summary>This progress after a round on <paramref name="version"/> of <paramref name="cluster"/>.</summary>
    public AgentProgress Trained(int cluster, long version, bool counted = true)
    {
        var rounds = Rounds + (counted ? 1 : 0);
        if (cluster == 0)
            return this with { LastTrainedVersion = version, Rounds = rounds };
        var versions = ClusterVersions is null ? [] : new Dictionary<int, long>(ClusterVersions);
        versions[cluster] = version;
        Dictionary<int, long>? declined = null;
        if (DeclinedEpochs is not null)
        {
            declined = new Dictionary<int, long>(DeclinedEpochs);
            declined.Remove(cluster);
        }
        return this with { Rounds = rounds, ClusterVersions = versions, DeclinedEpochs = declined };
    }

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
