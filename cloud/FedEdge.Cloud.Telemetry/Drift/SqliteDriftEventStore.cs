using FedEdge.Protocol.Messages;
using Microsoft.Data.Sqlite;

namespace FedEdge.Cloud.Telemetry.Drift;

/// <summary>What to read from the drift history; all filters optional.</summary>
public sealed record DriftEventQuery
{
    public const int MaxLimit = 10_000;

    public string? Federation { get; init; }
    public string? DeviceId { get; init; }

    /// <summary>Events detected at or after this time.</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>Events detected before this time.</summary>
    public DateTimeOffset? Until { get; init; }

    public DriftKind? Kind { get; init; }

    /// <summary>Only events with a larger <see cref="DriftEvent.Id"/> (paging: pass the last id seen).</summary>
    public long AfterId { get; init; }

    /// <summary>At most this many events, oldest first (1..<see cref="MaxLimit"/>).</summary>
    public int Limit { get; init; } = 1000;
}

/// <summary>
/// The durable drift history: one SQLite file (WAL, synchronous=FULL by default), one row per event, indexed by
/// federation and by device with the detection time. An append returns only after the row is committed, so an
/// event the cloud acknowledged survives a crash or restart. An update's event is stored once: a redelivered
/// update (same device and update id) is recognised and not stored again.
/// </summary>
public sealed class SqliteDriftEventStore
{
    private const string Columns = "id, federation, device_id, detected_ms, recorded_ms, kind, model_version, update_id, window_index, previous_centre, current_centre, label_shift, feature_shift, sample_count";

    private readonly string _connectionString;
    private readonly bool _synchronousFull;
    private readonly TimeProvider _time;

    public SqliteDriftEventStore(string databasePath, bool synchronousFull = true, TimeProvider? time = null)
    {
        _synchronousFull = synchronousFull;
        _time = time ?? TimeProvider.System;
        DatabasePath = Path.GetFullPath(databasePath);
        Directory.CreateDirectory(Path.GetDirectoryName(DatabasePath)!);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = DatabasePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS drift_events (
                id              INTEGER PRIMARY KEY AUTOINCREMENT,
                federation      TEXT NOT NULL,
                device_id       TEXT NOT NULL,
                detected_ms     INTEGER NOT NULL,
                recorded_ms     INTEGER NOT NULL,
                kind            INTEGER NOT NULL,
                model_version   INTEGER NOT NULL,
                update_id       TEXT,
                window_index    INTEGER NOT NULL,
                previous_centre INTEGER NOT NULL,
                current_centre  INTEGER NOT NULL,
                label_shift     REAL NOT NULL,
                feature_shift   REAL NOT NULL,
                sample_count    INTEGER NOT NULL
            );
            CREATE UNIQUE INDEX IF NOT EXISTS drift_events_update ON drift_events (device_id, update_id) WHERE update_id IS NOT NULL;
            CREATE INDEX IF NOT EXISTS drift_events_federation ON drift_events (federation, detected_ms);
            CREATE INDEX IF NOT EXISTS drift_events_device ON drift_events (device_id, detected_ms);
            """;
        command.ExecuteNonQuery();
    }

    public string DatabasePath { get; }

    /// <summary>
    /// Stores the event; returns it with its id and recording time, or null when the event of that device's update
    /// is already stored (a redelivery).
    /// </summary>
    public async Task<DriftEvent?> AppendAsync(DriftEvent driftEvent, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(driftEvent);
        Abstractions.Identifiers.Require(driftEvent.Federation, "federation");
        Abstractions.Identifiers.Require(driftEvent.DeviceId, "device id");
        if (!DriftEvent.IsDrift(driftEvent.Kind))
            throw new ArgumentException($"Drift event of {driftEvent.DeviceId}: kind {driftEvent.Kind} is not a drift (real, virtual or label)", nameof(driftEvent));
        var recorded = _time.GetUtcNow();
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = $"""
            INSERT INTO drift_events (federation, device_id, detected_ms, recorded_ms, kind, model_version, update_id, window_index, previous_centre, current_centre, label_shift, feature_shift, sample_count)
            VALUES ($f, $d, $t, $r, $k, $v, $u, $w, $pc, $cc, $ls, $fs, $n)
            ON CONFLICT DO NOTHING
            RETURNING id
            """;
        command.Parameters.AddWithValue("$f", driftEvent.Federation);
        command.Parameters.AddWithValue("$d", driftEvent.DeviceId);
        command.Parameters.AddWithValue("$t", driftEvent.DetectedAt.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$r", recorded.ToUnixTimeMilliseconds());
        command.Parameters.AddWithValue("$k", (int)driftEvent.Kind);
        command.Parameters.AddWithValue("$v", driftEvent.ModelVersion);
        command.Parameters.AddWithValue("$u", (object?)driftEvent.UpdateId ?? DBNull.Value);
        command.Parameters.AddWithValue("$w", driftEvent.WindowIndex);
        command.Parameters.AddWithValue("$pc", driftEvent.PreviousCentre);
        command.Parameters.AddWithValue("$cc", driftEvent.CurrentCentre);
        command.Parameters.AddWithValue("$ls", driftEvent.LabelShift);
        command.Parameters.AddWithValue("$fs", driftEvent.FeatureShift);
        command.Parameters.AddWithValue("$n", driftEvent.SampleCount);
        var id = await command.ExecuteScalarAsync(cancellationToken);
        return id is long stored
            ? driftEvent with { Id = stored, RecordedAt = DateTimeOffset.FromUnixTimeMilliseconds(recorded.ToUnixTimeMilliseconds()) }
            : null;
    }

    /// <summary>Events matching the query, oldest id first.</summary>
    public async Task<IReadOnlyList<DriftEvent>> QueryAsync(DriftEventQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (query.Limit is < 1 or > DriftEventQuery.MaxLimit)
            throw new ArgumentOutOfRangeException(nameof(query), $"limit {query.Limit} is outside 1..{DriftEventQuery.MaxLimit}");
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        var where = new List<string> { "id > $after" };
        command.Parameters.AddWithValue("$after", query.AfterId);
        if (query.Federation is not null) { where.Add("federation = $f"); command.Parameters.AddWithValue("$f", query.Federation); }
        if (query.DeviceId is not null) { where.Add("device_id = $d"); command.Parameters.AddWithValue("$d", query.DeviceId); }
        if (query.Since is { } since) { where.Add("detected_ms >= $since"); command.Parameters.AddWithValue("$since", since.ToUnixTimeMilliseconds()); }
        if (query.Until is { } until) { where.Add("detected_ms < $until"); command.Parameters.AddWithValue("$until", until.ToUnixTimeMilliseconds()); }
        if (query.Kind is { } kind) { where.Add("kind = $k"); command.Parameters.AddWithValue("$k", (int)kind); }
        command.CommandText = $"SELECT {Columns} FROM drift_events WHERE {string.Join(" AND ", where)} ORDER BY id LIMIT $limit";
        command.Parameters.AddWithValue("$limit", query.Limit);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var events = new List<DriftEvent>();
        while (await reader.ReadAsync(cancellationToken)) events.Add(Read(reader));
        return events;
    }

    /// <summary>Number of stored events of a federation (all federations when null).</summary>
    public async Task<long> CountAsync(string? federation = null, CancellationToken cancellationToken = default)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = federation is null ? "SELECT COUNT(*) FROM drift_events" : "SELECT COUNT(*) FROM drift_events WHERE federation = $f";
        if (federation is not null) command.Parameters.AddWithValue("$f", federation);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static DriftEvent Read(SqliteDataReader reader) => new()
    {
        Id = reader.GetInt64(0),
        Federation = reader.GetString(1),
        DeviceId = reader.GetString(2),
        DetectedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)),
        RecordedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)),
        Kind = (DriftKind)reader.GetInt32(5),
        ModelVersion = reader.GetInt64(6),
        UpdateId = reader.IsDBNull(7) ? null : reader.GetString(7),
        WindowIndex = reader.GetInt64(8),
        PreviousCentre = reader.GetInt32(9),
        CurrentCentre = reader.GetInt32(10),
        LabelShift = reader.GetDouble(11),
        FeatureShift = reader.GetDouble(12),
        SampleCount = reader.GetInt64(13),
    };

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        using var pragma = connection.CreateCommand();
        pragma.CommandText = _synchronousFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
        pragma.ExecuteNonQuery();
        return connection;
    }
}
