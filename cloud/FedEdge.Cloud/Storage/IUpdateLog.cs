using FedEdge.Cloud.Grains;

namespace FedEdge.Cloud.Storage;

/// <summary>An accepted update as the log keeps it: what the federation remembers of it, and its signed envelope.</summary>
public sealed record LoggedUpdate(PendingUpdate Update, ReadOnlyMemory<byte> Envelope);

/// <summary>
/// The durable home of the updates a model grain accepted and has not aggregated yet, so that a restart replays
/// them. A model's log is split into segments numbered by the version their updates are aggregated into: the open
/// round or FedBuff buffer of a model at version v appends to segment v + 1 (a FedBuff commit of v + 1 that admits
/// updates meanwhile appends those to v + 2). Once the state naming the new version is durable, the segments up to
/// it are dropped.
/// <list type="bullet">
/// <item><see cref="FileUpdateLog"/> (with the SQLite state, one silo): append-only files, one write per update.</item>
/// <item><see cref="GrainStorageUpdateLog"/> (with Redis, any silo): records in the grain storage.</item>
/// </list>
/// </summary>
public interface IUpdateLog
{
    /// <summary>
    /// Opens one model's log for its activation: returns the updates of segment <paramref name="pending"/> in the
    /// order they were appended (each once), and discards every other segment. Those before it were aggregated; those
    /// after it were appended during a commit that never completed, so no update in them was acknowledged.
    /// </summary>
    Task<IModelUpdateLog> OpenAsync(string model, long pending, CancellationToken cancellationToken = default);
}

/// <summary>One model's update log, owned by the model grain's activation.</summary>
public interface IModelUpdateLog
{
    /// <summary>The updates of the pending segment as <see cref="IUpdateLog.OpenAsync"/> found them.</summary>
    IReadOnlyList<LoggedUpdate> Recovered { get; }

    /// <summary>Appends an update to a segment; completes once it is durable.</summary>
    Task AppendAsync(long segment, LoggedUpdate update);

    /// <summary>Drops the segments up to and including <paramref name="segment"/>.</summary>
    Task DropThroughAsync(long segment);
}
