using FedEdge.Cloud.Abstractions;
using Microsoft.Data.Sqlite;

namespace FedEdge.Cloud.Security;

/// <summary>
/// The durable list of devices (SQLite file <c>registry.db</c> in the data directory): id, federation,
/// password hash, Ed25519 public key, revoked flag. The broker authenticates against it, the ingestion
/// bridge looks up keys in it, and <c>fededge devices</c> edits it, possibly from another process
/// (WAL mode; every call opens a pooled connection, and each <see cref="Find"/> reads the committed state, so a
/// revocation by another process applies to the next update).
/// </summary>
public sealed class DeviceRegistry : IDisposable
{
    private readonly string _connectionString;

    /// <summary>
    /// <see cref="Find"/> runs once per ingested update: its SELECT is prepared once per connection and reused, instead
    /// of being parsed and planned on every call (about 1 % of the ingest path's CPU). One lookup per concurrent caller.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentBag<SqliteCommand> _lookups = [];

    public DeviceRegistry(string databasePath)
    {
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
            CREATE TABLE IF NOT EXISTS devices (
                id            TEXT PRIMARY KEY NOT NULL,
                federation    TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                public_key    BLOB NOT NULL,
                revoked       INTEGER NOT NULL DEFAULT 0,
                created_utc   TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS federations (
                name        TEXT PRIMARY KEY NOT NULL,
                created_utc TEXT NOT NULL
            );
            """;
        command.ExecuteNonQuery();
        // Registries written before devices declared their dataset size get the column (null: no per-device cap).
        command.CommandText = "SELECT COUNT(*) FROM pragma_table_info('devices') WHERE name = 'max_samples'";
        if (Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) == 0)
        {
            command.CommandText = "ALTER TABLE devices ADD COLUMN max_samples INTEGER";
            command.ExecuteNonQuery();
        }
    }

    /// <summary>User names a device may not take: the cloud's own MQTT identity (with Mosquitto, a device registered under
    /// it would share the service's password-file entry and ACL, and could read every update and publish models).</summary>
    public IReadOnlySet<string> ReservedNames { get; init; } = new HashSet<string>(StringComparer.Ordinal) { ServiceIdentity.DefaultUserName };

    public string DatabasePath => new SqliteConnectionStringBuilder(_connectionString).DataSource;

    /// <summary>
    /// Registers a new device with fresh credentials. Returns the record and the secrets that only the
    /// device keeps (MQTT password, Ed25519 private key); the registry stores neither.
    /// </summary>
    /// <param name="deviceId">The device id (also its MQTT user name and client id); not a <see cref="ReservedNames">reserved name</see>.</param>
    /// <param name="federation">Its federation.</param>
    /// <param name="maxSamples">The size of its local dataset, if known: the most samples it may claim for one update.</param>
    public (DeviceRecord Record, string Password, byte[] PrivateKey) Add(string deviceId, string federation, long? maxSamples = null)
    {
        Identifiers.Require(deviceId, "device id");
        Identifiers.Require(federation, "federation");
        if (ReservedNames.Contains(deviceId))
            throw new ArgumentException($"'{deviceId}' is reserved for the cloud's own MQTT identity; a device cannot be registered under it", nameof(deviceId));
        if (maxSamples is < 1) throw new ArgumentOutOfRangeException(nameof(maxSamples), maxSamples, "a device's sample count must be ≥ 1");
        var password = MosquittoPasswordHash.NewPassword();
        var (privateKey, publicKey) = Ed25519KeyFile.Create();
        var record = new DeviceRecord(deviceId, federation, MosquittoPasswordHash.Create(password), publicKey, false, DateTimeOffset.UtcNow, maxSamples);
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO devices (id, federation, password_hash, public_key, revoked, created_utc, max_samples) VALUES ($id, $f, $h, $k, 0, $c, $m)";
        command.Parameters.AddWithValue("$m", (object?)maxSamples ?? DBNull.Value);
        command.Parameters.AddWithValue("$id", record.DeviceId);
        command.Parameters.AddWithValue("$f", record.Federation);
        command.Parameters.AddWithValue("$h", record.PasswordHash);
        command.Parameters.AddWithValue("$k", record.PublicKey);
        command.Parameters.AddWithValue("$c", record.CreatedAt.ToString("O"));
        try
        {
            command.ExecuteNonQuery();
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19) // SQLITE_CONSTRAINT
        {
            throw new InvalidOperationException($"Device '{deviceId}' is already registered", e);
        }
        return (record, password, privateKey);
    }

    public DeviceRecord? Find(string deviceId)
    {
        var lookup = _lookups.TryTake(out var pooled) ? pooled : NewLookup();
        DeviceRecord? record;
        try
        {
            lookup.Parameters[0].Value = deviceId;
            using var reader = lookup.ExecuteReader();
            record = reader.Read() ? ReadRecord(reader) : null;
        }
        catch
        {
            // Possibly a broken connection: not reused.
            Dispose(lookup);
            throw;
        }
        _lookups.Add(lookup);
        return record;
    }

    private SqliteCommand NewLookup()
    {
        var command = Open().CreateCommand();
        command.CommandText = "SELECT id, federation, password_hash, public_key, revoked, created_utc, max_samples FROM devices WHERE id = $id";
        command.Parameters.Add(new SqliteParameter { ParameterName = "$id" });
        command.Prepare();
        return command;
    }

    private static void Dispose(SqliteCommand lookup)
    {
        var connection = lookup.Connection;
        lookup.Dispose();
        connection?.Dispose();
    }

    public void Dispose()
    {
        while (_lookups.TryTake(out var lookup)) Dispose(lookup);
    }

    public IReadOnlyList<DeviceRecord> List(string? federation = null)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = federation is null
            ? "SELECT id, federation, password_hash, public_key, revoked, created_utc, max_samples FROM devices ORDER BY id"
            : "SELECT id, federation, password_hash, public_key, revoked, created_utc, max_samples FROM devices WHERE federation = $f ORDER BY id";
        if (federation is not null) command.Parameters.AddWithValue("$f", federation);
        using var reader = command.ExecuteReader();
        var records = new List<DeviceRecord>();
        while (reader.Read()) records.Add(ReadRecord(reader));
        return records;
    }

    /// <summary>Marks the device revoked; false when no such device is registered.</summary>
    public bool Revoke(string deviceId)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE devices SET revoked = 1 WHERE id = $id";
        command.Parameters.AddWithValue("$id", deviceId);
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>
    /// Checks an MQTT login. Returns the device when it exists, is not revoked and the password matches;
    /// otherwise null and the reason in <paramref name="failure"/>.
    /// </summary>
    public DeviceRecord? Authenticate(string? userName, string? password, out string? failure)
    {
        var record = Identifiers.IsValid(userName) ? Find(userName!) : null;
        // Every login costs one PBKDF2 check, against a dummy hash for an unknown name: an unknown name answering faster
        // than a known one would let anyone list the registered ids.
        var matches = MosquittoPasswordHash.Verify(password ?? "", record?.PasswordHash ?? DummyHash.Value) && password is not null;
        if (record is null) { failure = Identifiers.IsValid(userName) ? "unknown device" : "invalid user name"; return null; }
        if (record.Revoked) { failure = "device revoked"; return null; }
        if (!matches) { failure = "bad password"; return null; }
        failure = null;
        return record;
    }

    /// <summary>A hash of a random password with the default iterations, checked for unknown names (no password matches it).</summary>
    private static readonly Lazy<string> DummyHash = new(() => MosquittoPasswordHash.Create(MosquittoPasswordHash.NewPassword()));

    /// <summary>Records that a federation exists, so the cloud re-activates it (and republishes its model) on start.</summary>
    public void AddFederation(string federation)
    {
        Identifiers.Require(federation, "federation");
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO federations (name, created_utc) VALUES ($n, $c) ON CONFLICT DO NOTHING";
        command.Parameters.AddWithValue("$n", federation);
        command.Parameters.AddWithValue("$c", DateTimeOffset.UtcNow.ToString("O"));
        command.ExecuteNonQuery();
    }

    public IReadOnlyList<string> ListFederations()
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM federations ORDER BY name";
        using var reader = command.ExecuteReader();
        var names = new List<string>();
        while (reader.Read()) names.Add(reader.GetString(0));
        return names;
    }

    private static DeviceRecord ReadRecord(SqliteDataReader reader) => new(
        reader.GetString(0),
        reader.GetString(1),
        reader.GetString(2),
        (byte[])reader.GetValue(3),
        reader.GetInt64(4) != 0,
        DateTimeOffset.Parse(reader.GetString(5), System.Globalization.CultureInfo.InvariantCulture),
        reader.IsDBNull(6) ? null : reader.GetInt64(6));

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        return connection;
    }
}
