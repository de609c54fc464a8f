using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Storage;

namespace FedEdge.Cloud.Storage;

/// <summary>
/// An Orleans grain-storage provider over one SQLite file: the embedded default that needs no server.
/// Each (state name, grain id) is one row holding the state serialized by Orleans' serializer and an
/// integer ETag; a write whose ETag does not match the stored one fails with
/// <see cref="InconsistentStateException"/>, as Orleans' providers do.
/// </summary>
public sealed class SqliteGrainStorage : IGrainStorage, IDisposable
{
    private readonly string _connectionString;
    private readonly IGrainStorageSerializer _serializer;
    private readonly ILogger _logger;
    private readonly string _name;
    private readonly bool _synchronousFull;

    public SqliteGrainStorage(string name, string databasePath, IGrainStorageSerializer serializer, ILogger<SqliteGrainStorage> logger, bool synchronousFull = true)
    {
        _name = name;
        _serializer = serializer;
        _logger = logger;
        _synchronousFull = synchronousFull;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(databasePath))!);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = databasePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS grain_state (
                state_name TEXT NOT NULL,
                grain_id   TEXT NOT NULL,
                etag       INTEGER NOT NULL,
                payload    BLOB NOT NULL,
                PRIMARY KEY (state_name, grain_id)
            ) WITHOUT ROWID;
            """;
        command.ExecuteNonQuery();
    }

    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT etag, payload FROM grain_state WHERE state_name = $s AND grain_id = $g";
        command.Parameters.AddWithValue("$s", stateName);
        command.Parameters.AddWithValue("$g", grainId.ToString());
        using var reader = command.ExecuteReader();
        if (!reader.Read())
        {
            grainState.State = Activator.CreateInstance<T>();
            grainState.ETag = null;
            grainState.RecordExists = false;
            return Task.CompletedTask;
        }
        var etag = reader.GetInt64(0);
        var payload = (byte[])reader.GetValue(1);
        try
        {
            grainState.State = _serializer.Deserialize<T>(new BinaryData(payload));
        }
        catch (Exception e)
        {
            throw new InvalidDataException($"Storage '{_name}': state '{stateName}' of grain {grainId} (etag {etag}) cannot be deserialized as {typeof(T).Name}", e);
        }
        grainState.ETag = etag.ToString(System.Globalization.CultureInfo.InvariantCulture);
        grainState.RecordExists = true;
        return Task.CompletedTask;
    }

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var payload = _serializer.Serialize(grainState.State).ToArray();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.Parameters.AddWithValue("$s", stateName);
        command.Parameters.AddWithValue("$g", grainId.ToString());
        command.Parameters.AddWithValue("$p", payload);
        long newEtag;
        if (grainState.ETag is null)
        {
            newEtag = 1;
            command.CommandText = "INSERT INTO grain_state (state_name, grain_id, etag, payload) VALUES ($s, $g, 1, $p) ON CONFLICT DO NOTHING";
        }
        else
        {
            var expected = ParseEtag(grainState.ETag, stateName, grainId);
            newEtag = expected + 1;
            command.CommandText = "UPDATE grain_state SET etag = $n, payload = $p WHERE state_name = $s AND grain_id = $g AND etag = $e";
            command.Parameters.AddWithValue("$e", expected);
            command.Parameters.AddWithValue("$n", newEtag);
        }
        if (command.ExecuteNonQuery() != 1)
        {
            var stored = StoredEtag(connection, stateName, grainId);
            throw new InconsistentStateException(
                $"Storage '{_name}': write of state '{stateName}' for grain {grainId} expected etag {grainState.ETag ?? "(none)"}",
                stored?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "(none)", grainState.ETag ?? "(none)");
        }
        grainState.ETag = newEtag.ToString(System.Globalization.CultureInfo.InvariantCulture);
        grainState.RecordExists = true;
        return Task.CompletedTask;
    }

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        if (grainState.ETag is not null)
        {
            using var connection = Open();
            using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM grain_state WHERE state_name = $s AND grain_id = $g AND etag = $e";
            command.Parameters.AddWithValue("$s", stateName);
            command.Parameters.AddWithValue("$g", grainId.ToString());
            command.Parameters.AddWithValue("$e", ParseEtag(grainState.ETag, stateName, grainId));
            if (command.ExecuteNonQuery() != 1)
            {
                var stored = StoredEtag(connection, stateName, grainId);
                if (stored is not null)
                    throw new InconsistentStateException(
                        $"Storage '{_name}': clear of state '{stateName}' for grain {grainId} expected etag {grainState.ETag}",
                        stored.Value.ToString(System.Globalization.CultureInfo.InvariantCulture), grainState.ETag);
            }
        }
        grainState.ETag = null;
        grainState.RecordExists = false;
        grainState.State = Activator.CreateInstance<T>();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _logger.LogDebug("Storage {Name} closed", _name);
    }

    private static long? StoredEtag(SqliteConnection connection, string stateName, GrainId grainId)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT etag FROM grain_state WHERE state_name = $s AND grain_id = $g";
        command.Parameters.AddWithValue("$s", stateName);
        command.Parameters.AddWithValue("$g", grainId.ToString());
        return command.ExecuteScalar() is long etag ? etag : null;
    }

    private long ParseEtag(string etag, string stateName, GrainId grainId) =>
        long.TryParse(etag, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new InconsistentStateException($"Storage '{_name}': etag '{etag}' of state '{stateName}' for grain {grainId} is not one of this provider's", "(unknown)", etag);

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
