using FedEdge.Cloud.Abstractions;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// The cold half of a federation's state (<see cref="FederationHistoryState"/>): the round history and the window of
/// recently aggregated update keys, with a set over the window for O(1) look-ups. Changed only when a version is
/// committed, so the federation writes it once per version instead of with every accepted update.
/// <para>
/// A version commit writes this record first and the hot <see cref="FederationState"/> (new version) second; the
/// update log's segment of the version is dropped after both. A crash between the two writes leaves this record one
/// version ahead: it holds the new version's summary and the keys of updates that the log still holds as pending at
/// the old version. <see cref="Reconcile"/> (on activation) drops both, so those updates are replayed and aggregated
/// into the new version once more, and only once. The other order would be unsafe: a hot state at the new version
/// (its segment then discarded), next to a window without their keys, would take a redelivered update a second time
/// wherever the device grain's lazily written window has not caught up.
/// </para>
/// </summary>
public sealed class FederationHistory
{
    /// <summary>Completed aggregations kept for the status.</summary>
    public const int RoundLimit = 1000;

    /// <summary>Aggregated update keys remembered for de-duplication (device grains keep their own window too).</summary>
    public const int WindowLimit = 1024;

    private readonly HashSet<string> _window;

    public FederationHistory(FederationHistoryState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        State = state;
        _window = new HashSet<string>(state.RecentlyAggregated, StringComparer.Ordinal);
    }

    /// <summary>The persisted record this wraps (changed in place).</summary>
    public FederationHistoryState State { get; }

    public IReadOnlyList<RoundSummary> Rounds => State.Rounds;

    /// <summary>
    /// The summaries of versions up to <paramref name="committedVersion"/>: while a commit writes this record, the new
    /// version's summary is already here but the version is not yet the federation's (its parameters are not yet served),
    /// so a status must not show it; a client that reads the model once a round appears would get the old one.
    /// </summary>
    public RoundSummary[] RoundsThrough(long committedVersion)
    {
        var count = State.Rounds.Count;
        while (count > 0 && State.Rounds[count - 1].Version > committedVersion) count--;
        return State.Rounds.GetRange(0, count).ToArray();
    }

    /// <summary>Whether the update is in the window of recently aggregated ones.</summary>
    public bool WasAggregated(string deviceId, string updateId) => _window.Contains(Key(deviceId, updateId));

    /// <summary>Records a committed version: its summary, and the keys of the updates it aggregated.</summary>
    public void RecordVersion(RoundSummary summary, IEnumerable<PendingUpdate> aggregated)
    {
        ArgumentNullException.ThrowIfNull(summary);
        State.ModelVersion = summary.Version;
        State.Rounds.Add(summary);
        if (State.Rounds.Count > RoundLimit) State.Rounds.RemoveRange(0, State.Rounds.Count - RoundLimit);
        foreach (var p in aggregated)
        {
            var key = Key(p.DeviceId, p.UpdateId);
            if (_window.Add(key)) State.RecentlyAggregated.Add(key);
        }
        if (State.RecentlyAggregated.Count <= WindowLimit) return;
        var excess = State.RecentlyAggregated.Count - WindowLimit;
        for (var i = 0; i < excess; i++) _window.Remove(State.RecentlyAggregated[i]);
        State.RecentlyAggregated.RemoveRange(0, excess);
    }

    /// <summary>
    /// Undoes a commit whose hot-state write did not happen (see the class remarks): drops the summaries of versions
    /// after <paramref name="committedVersion"/> and the keys of the still-pending updates. Returns whether it changed
    /// anything. Idempotent, so the record need not be rewritten: the next commit overwrites it.
    /// </summary>
    public bool Reconcile(long committedVersion, IEnumerable<PendingUpdate> pending)
    {
        if (State.ModelVersion <= committedVersion) return false;
        State.Rounds.RemoveAll(r => r.Version > committedVersion);
        foreach (var p in pending)
        {
            var key = Key(p.DeviceId, p.UpdateId);
            if (_window.Remove(key)) State.RecentlyAggregated.Remove(key);
        }
        State.ModelVersion = committedVersion;
        return true;
    }

    /// <summary>The summary of version <paramref name="version"/> aggregated from <paramref name="aggregated"/>.</summary>
    /// <param name="openedAt">When the round (sync) or buffer (async) opened, if known.</param>
    public static RoundSummary Summarize(long version, IReadOnlyList<PendingUpdate> aggregated, DateTimeOffset? openedAt, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(aggregated);
        var losses = aggregated.Where(p => p.TrainLoss is not null).Select(p => p.TrainLoss!.Value).ToArray();
        // Only a decline has zero samples (the verifier admits sample_count 0 for nothing else).
        var updates = aggregated.Where(p => p.SampleCount > 0).ToArray();
        return new RoundSummary
        {
            Version = version,
            Updates = updates.Length,
            Declines = aggregated.Count - updates.Length,
            BytesUp = aggregated.Sum(p => (long)p.Bytes),
            MeanTrainLoss = losses.Length > 0 ? losses.Average() : null,
            CompletedAt = now,
            Duration = now - (openedAt ?? (aggregated.Count > 0 ? aggregated[0].ReceivedAt : now)),
            // Staleness against the version the update was aggregated into, minus one: 0 for an update based on the previous version.
            MeanStaleness = updates.Length > 0 ? updates.Average(p => (double)(version - 1 - p.BaseVersion)) : 0,
        };
    }

    private static string Key(string deviceId, string updateId) => deviceId + "/" + updateId;
}
