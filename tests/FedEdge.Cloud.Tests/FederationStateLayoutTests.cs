using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Grains;
using FedEdge.Cloud.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Orleans.Concurrency;
using Orleans.Runtime;
using Orleans.Storage;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// The federation's state in two records: the hot <see cref="FederationState"/> written per accepted update and the
/// cold <see cref="FederationHistoryState"/> written per committed version (cold first). Covers the window logic, a
/// crash between the two writes of a commit, and states stored in the layout before the split.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class FederationStateLayoutTests
{
    private static readonly FederationConfig AsyncConfig = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.Async,
        BufferSize = 3,
        MaxStaleness = 10,
        ServerLearningRate = 1.0,
    };

    private static PendingUpdate Pending(string device, string update, long baseVersion = 0) =>
        new(device, update, baseVersion, SampleCount: 1, Bytes: 100, TrainLoss: null, ReceivedAt: DateTimeOffset.UnixEpoch);

    private static RoundSummary Summary(long version, params PendingUpdate[] updates) =>
        FederationHistory.Summarize(version, updates, openedAt: null, DateTimeOffset.UnixEpoch);

    [Fact]
    public void TheWindowKeepsTheNewestKeys_AndTheHistoryItsLimit()
    {
        var history = new FederationHistory(new FederationHistoryState());
        var batches = Enumerable.Range(1, 3).Select(v => Enumerable.Range(0, 600).Select(i => Pending($"d{i}", $"v{v}")).ToArray()).ToArray();
        for (var v = 1; v <= 3; v++) history.RecordVersion(Summary(v, batches[v - 1]), batches[v - 1]);

        Assert.Equal(FederationHistory.WindowLimit, history.State.RecentlyAggregated.Count);
        Assert.True(history.WasAggregated("d599", "v3"));
        Assert.True(history.WasAggregated("d0", "v3"));
        Assert.True(history.WasAggregated("d599", "v2")); // the newest 1,024 − 600 = 424 keys of v2 stay
        Assert.False(history.WasAggregated("d175", "v2"));
        Assert.False(history.WasAggregated("d0", "v1"));
        Assert.Equal([1L, 2L, 3L], history.Rounds.Select(r => r.Version));
        Assert.Equal(3, history.State.ModelVersion);
        // The persisted list and the look-up set agree after a reload.
        var reloaded = new FederationHistory(history.State);
        Assert.False(reloaded.WasAggregated("d175", "v2"));
        Assert.True(reloaded.WasAggregated("d176", "v2"));

        for (var v = 4; v <= FederationHistory.RoundLimit + 5; v++) history.RecordVersion(Summary(v), []);
        Assert.Equal(FederationHistory.RoundLimit, history.Rounds.Count);
        Assert.Equal(6, history.Rounds[0].Version);
    }

    [Fact]
    public void ReconcileUndoesACommitWhoseHotStateWasNotWritten()
    {
        var history = new FederationHistory(new FederationHistoryState());
        var first = new[] { Pending("a", "1"), Pending("b", "1") };
        history.RecordVersion(Summary(1, first), first);
        var second = new[] { Pending("a", "2", 1), Pending("c", "1", 1) };
        history.RecordVersion(Summary(2, second), second);

        // A status shows only committed versions: v2's summary is recorded before the hot state says v2.
        Assert.Equal([1L], history.RoundsThrough(1).Select(r => r.Version));
        Assert.Equal([1L, 2L], history.RoundsThrough(2).Select(r => r.Version));

        // The hot state is still at v1 with the two updates pending: the v2 summary and their keys go.
        Assert.True(history.Reconcile(committedVersion: 1, second));
        Assert.Equal([1L], history.Rounds.Select(r => r.Version));
        Assert.False(history.WasAggregated("a", "2"));
        Assert.False(history.WasAggregated("c", "1"));
        Assert.True(history.WasAggregated("a", "1"));
        Assert.Equal(["a/1", "b/1"], history.State.RecentlyAggregated);
        Assert.Equal(1, history.State.ModelVersion);
        Assert.False(history.Reconcile(committedVersion: 1, second)); // idempotent
        Assert.False(history.Reconcile(committedVersion: 5, [])); // never ahead: nothing to undo
    }

    [Fact]
    public void MigrationMovesTheLegacyFieldsOnce()
    {
        var rounds = new List<RoundSummary> { Summary(1, Pending("a", "1")) };
        var hot = new FederationState { ModelVersion = 1, LegacyHistory = rounds, LegacyRecentlyAggregated = ["a/1"] };
        var history = new FederationHistory(new FederationHistoryState());
        Assert.True(history.MigrateFrom(hot, recordExists: false));
        Assert.Null(hot.LegacyHistory);
        Assert.Null(hot.LegacyRecentlyAggregated);
        Assert.True(history.WasAggregated("a", "1"));
        Assert.Equal(1, history.State.ModelVersion);
        Assert.Single(history.Rounds);
        Assert.False(history.MigrateFrom(hot, recordExists: true));

        // A migration that wrote the cold record and stopped before the hot one: the record wins, the copies go.
        var interrupted = new FederationState { ModelVersion = 1, LegacyHistory = [], LegacyRecentlyAggregated = ["stale/1"] };
        Assert.True(history.MigrateFrom(interrupted, recordExists: true));
        Assert.Null(interrupted.LegacyRecentlyAggregated);
        Assert.False(history.WasAggregated("stale", "1"));
        Assert.True(history.WasAggregated("a", "1"));
    }

    /// <summary>
    /// The commit of v1 wrote the cold record (summary, aggregated keys) and the process died before the hot state
    /// (still v0 with the updates pending): after the restart the updates are aggregated into v1 exactly once.
    /// </summary>
    [Fact]
    public async Task ACrashBetweenTheTwoWritesOfACommit_NeitherLosesNorDoubleCountsTheUpdates()
    {
        using var data = new TempDirectory();
        var run = await AcceptTwoAndStopAsync(data.Path);

        // What the commit of v1 from these two updates writes first (a deadline-style flush, as the grain does it).
        using (var storage = StateFile.Open(data.Path))
        {
            var hot = await storage.ReadAsync<FederationState>("federation", "fa");
            var pending = (await LoggedAsync(data.Path, "fa", segment: 1)).Select(u => u.Update).ToList();
            Assert.Equal(2, pending.Count);
            var cold = new FederationHistory(new FederationHistoryState());
            cold.RecordVersion(FederationHistory.Summarize(1, pending, hot.RoundOpenedAt, DateTimeOffset.UtcNow), pending);
            await storage.WriteAsync("federation-history", "fa", cold.State);
        }

        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
            Assert.Empty((await federation.GetStatusAsync()).History);
            await using var dev1 = await CompleteV1AfterRestartAsync(cloud, run);

            // After v1 the resend is refused by the federation's window (device grains' windows aside).
            await dev1.PublishEnvelopeAsync(run.First);
            await TestModels.WaitUntilAsync(() => Task.FromResult(cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>().Rejected(RejectionReason.Replay) == 2), "both resends refused");
            Assert.Equal(1, (await federation.GetStatusAsync()).ModelVersion);
        }
    }

    /// <summary>A state stored before the split (history and window inside the hot state) loads, keeps refusing replays and is migrated.</summary>
    [Fact]
    public async Task AStateInTheLayoutBeforeTheSplitLoads_AndItsWindowStillRefusesReplays()
    {
        using var data = new TempDirectory();
        string password;
        byte[] key;
        byte[] aggregated;
        int d;
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await using var dev2 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-2", "fa");
            await using var dev3 = await TestDevice.RegisterAndConnectAsync(cloud, "dev-3", "fa");
            (_, password, key) = cloud.Registry.Add("dev-1", "fa");
            await using var dev1 = await TestDevice.ConnectAsync(cloud, "dev-1", "fa", password, key);
            var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
            d = (await federation.StartAsync(AsyncConfig, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
            aggregated = dev1.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0);
            await dev1.PublishEnvelopeAsync(aggregated);
            await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Enumerable.Repeat(2f, d).ToArray(), 0));
            await dev3.PublishEnvelopeAsync(dev3.SignedUpdate(Enumerable.Repeat(3f, d).ToArray(), 0));
            await TestModels.WaitUntilAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "v1");
            var metrics = cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();
            await TestModels.WaitUntilAsync(() => Task.FromResult(metrics.Accepted == 3), "the devices to record their updates");
        }

        // Rewrite the records into the old layout, and empty dev-1's own window so that only the federation's can refuse.
        using (var storage = StateFile.Open(data.Path))
        {
            var hot = await storage.ReadAsync<FederationState>("federation", "fa");
            var cold = await storage.ReadAsync<FederationHistoryState>("federation-history", "fa");
            Assert.Equal(3, cold.RecentlyAggregated.Count);
            hot.LegacyHistory = cold.Rounds;
            hot.LegacyRecentlyAggregated = cold.RecentlyAggregated;
            await storage.WriteAsync("federation", "fa", hot);
            await storage.ClearAsync<FederationHistoryState>("federation-history", "fa");
            var device = await storage.ReadAsync<DeviceState>("device", "dev-1");
            device.RecentUpdateIds = [];
            await storage.WriteAsync("device", "dev-1", device);
        }

        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
            var status = await federation.GetStatusAsync();
            Assert.Equal(1, status.ModelVersion);
            Assert.Equal(3, Assert.Single(status.History).Updates);
            await using var dev1 = await TestDevice.ConnectAsync(cloud, "dev-1", "fa", password, key);
            await dev1.PublishEnvelopeAsync(aggregated); // τ = 1 is within the cut-off: only the window refuses it
            await TestModels.WaitUntilAsync(async () => (await federation.GetStatusAsync()).RejectedTotal.GetValueOrDefault(RejectionReason.Replay) == 1,
                "the federation to refuse the replay");
            Assert.Equal(0, (await federation.GetStatusAsync()).PendingUpdates);
        }

        using (var storage = StateFile.Open(data.Path))
        {
            var hot = await storage.ReadAsync<FederationState>("federation", "fa");
            Assert.Null(hot.LegacyHistory);
            Assert.Null(hot.LegacyRecentlyAggregated);
            var cold = await storage.ReadAsync<FederationHistoryState>("federation-history", "fa");
            Assert.Equal(3, cold.RecentlyAggregated.Count);
            Assert.Single(cold.Rounds);
        }
    }

    /// <summary>
    /// A state stored before the update log (pending list in the hot state, each envelope in a record of its own) loads
    /// with its pending updates, aggregates each once, and is moved into the log.
    /// </summary>
    [Fact]
    public async Task PendingUpdatesInTheLayoutBeforeTheUpdateLogAreMovedIntoIt_AndAggregatedOnce()
    {
        using var data = new TempDirectory();
        var run = await AcceptTwoAndStopAsync(data.Path);

        // Rewrite the two pending updates into the old layout: listed in the hot state (and counted in its total), each
        // envelope in an "update" record; the log forgets them.
        var logged = await LoggedAsync(data.Path, "fa", segment: 1, drop: true);
        Assert.Equal(2, logged.Count);
        GrainId OldRecord(PendingUpdate p) => GrainId.Create("fededge-update", $"fa/{p.DeviceId}/{p.UpdateId}");
        using (var storage = StateFile.Open(data.Path))
        {
            var hot = await storage.ReadAsync<FederationState>("federation", "fa");
            hot.LegacyPending = [.. logged.Select(u => u.Update)];
            hot.AcceptedTotal += logged.Count;
            await storage.WriteAsync("federation", "fa", hot);
            foreach (var (pending, envelope) in logged) await storage.WriteAsync("update", OldRecord(pending), new StoredUpdate { Envelope = envelope.ToArray() });
        }

        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await using var dev1 = await CompleteV1AfterRestartAsync(cloud, run);
        }

        using (var storage = StateFile.Open(data.Path))
        {
            Assert.Null((await storage.ReadAsync<FederationState>("federation", "fa")).LegacyPending);
            foreach (var (pending, _) in logged) Assert.False(await storage.ExistsAsync<StoredUpdate>("update", OldRecord(pending)));
        }
    }

    /// <summary>A device state whose de-duplication window is stored as hex strings (before the packed form) still refuses replays, and is rewritten packed.</summary>
    [Fact]
    public async Task ADeviceWindowInTheStringLayoutStillRefusesReplays_AndIsRewrittenPacked()
    {
        using var data = new TempDirectory();
        string password;
        byte[] key;
        byte[] accepted;
        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            (_, password, key) = cloud.Registry.Add("dev-1", "fa");
            await using var dev1 = await TestDevice.ConnectAsync(cloud, "dev-1", "fa", password, key);
            var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
            var d = (await federation.StartAsync(AsyncConfig, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
            accepted = dev1.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0);
            await dev1.PublishEnvelopeAsync(accepted);
            var metrics = cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();
            await TestModels.WaitUntilAsync(() => Task.FromResult(metrics.Accepted == 1), "the update to be accepted");
        }

        using (var storage = StateFile.Open(data.Path))
        {
            var device = await storage.ReadAsync<DeviceState>("device", "dev-1");
            Assert.Equal(UpdateIdWindow.IdBytes, device.RecentUpdateIds.Length);
            device.LegacyRecentUpdateIds = [Convert.ToHexString(device.RecentUpdateIds)];
            device.RecentUpdateIds = [];
            await storage.WriteAsync("device", "dev-1", device);
        }
        // The federation forgets the update too, so that only the device's window can refuse it.
        Assert.Single(await LoggedAsync(data.Path, "fa", segment: 1, drop: true));

        await using (var cloud = await CloudTestHost.StartAsync(data.Path))
        {
            await using var dev1 = await TestDevice.ConnectAsync(cloud, "dev-1", "fa", password, key);
            await dev1.PublishEnvelopeAsync(accepted);
            var metrics = cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();
            await TestModels.WaitUntilAsync(() => Task.FromResult(metrics.RejectedByReason.GetValueOrDefault(RejectionReason.Replay) == 1),
                "the device's window to refuse the replay");
            var status = await cloud.Grains.GetGrain<IFederationGrain>("fa").GetStatusAsync();
            Assert.Equal(0, status.PendingUpdates);
            Assert.Equal(0, status.RejectedTotal.GetValueOrDefault(RejectionReason.Replay));
        }

        using (var storage = StateFile.Open(data.Path))
        {
            var device = await storage.ReadAsync<DeviceState>("device", "dev-1");
            Assert.Empty(device.LegacyRecentUpdateIds);
            Assert.Equal(UpdateIdWindow.IdBytes, device.RecentUpdateIds.Length);
            Assert.Equal(1, device.Rejected[RejectionReason.Replay]);
        }
    }

    /// <summary>The cloud's SQLite state file opened directly, between two runs of the cloud.</summary>
    /// <summary>What <see cref="AcceptTwoAndStopAsync"/> leaves: the devices' credentials, v0, d and dev-1's accepted update.</summary>
    private sealed record TwoPending(Dictionary<string, (string Password, byte[] Key)> Devices, float[] V0, int D, byte[] First);

    /// <summary>Federation "fa" (FedBuff, K = 3) with devices dev-1..3; dev-1 and dev-2 deliver Δ = 1 and Δ = 2, left pending when the cloud stops.</summary>
    private static async Task<TwoPending> AcceptTwoAndStopAsync(string dataDirectory)
    {
        var devices = new Dictionary<string, (string Password, byte[] Key)>();
        await using var cloud = await CloudTestHost.StartAsync(dataDirectory);
        foreach (var id in new[] { "dev-1", "dev-2", "dev-3" })
        {
            var (_, password, key) = cloud.Registry.Add(id, "fa");
            devices[id] = (password, key);
        }
        var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
        var d = (await federation.StartAsync(AsyncConfig, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        var v0 = (await federation.GetModelAsync())!.Parameters;
        await using var dev1 = await TestDevice.ConnectAsync(cloud, "dev-1", "fa", devices["dev-1"].Password, devices["dev-1"].Key);
        await using var dev2 = await TestDevice.ConnectAsync(cloud, "dev-2", "fa", devices["dev-2"].Password, devices["dev-2"].Key);
        var first = dev1.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0);
        await dev1.PublishEnvelopeAsync(first);
        await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Enumerable.Repeat(2f, d).ToArray(), 0));
        await TestModels.WaitUntilAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 2, "two pending updates");
        return new TwoPending(devices, v0, d, first);
    }

    /// <summary>
    /// After a restart the two updates are pending at v0; dev-1 resends its update (an outbox resend: a replay) and
    /// dev-3 delivers Δ = 6, so v1 = v0 + (1 + 2 + 6)/3 only if each update counts once. Returns dev-1, still connected.
    /// </summary>
    private static async Task<TestDevice> CompleteV1AfterRestartAsync(CloudTestHost cloud, TwoPending run)
    {
        var federation = cloud.Grains.GetGrain<IFederationGrain>("fa");
        var status = await federation.GetStatusAsync();
        Assert.Equal(0, status.ModelVersion);
        Assert.Equal(2, status.PendingUpdates);
        Assert.Equal(2, status.AcceptedTotal);
        var dev1 = await TestDevice.ConnectAsync(cloud, "dev-1", "fa", run.Devices["dev-1"].Password, run.Devices["dev-1"].Key);
        await using var dev3 = await TestDevice.ConnectAsync(cloud, "dev-3", "fa", run.Devices["dev-3"].Password, run.Devices["dev-3"].Key);
        await dev1.PublishEnvelopeAsync(run.First);
        await dev3.PublishEnvelopeAsync(dev3.SignedUpdate(Enumerable.Repeat(6f, run.D).ToArray(), 0));
        await TestModels.WaitUntilAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "v1 after the restart");
        var v1 = (await federation.GetModelAsync())!.Parameters;
        for (var i = 0; i < run.D; i++) Assert.Equal(run.V0[i] + 3f, v1[i], 1e-5f);
        status = await federation.GetStatusAsync();
        var round = Assert.Single(status.History);
        Assert.Equal(1, round.Version);
        Assert.Equal(3, round.Updates);
        Assert.Equal(3, status.AcceptedTotal);
        var metrics = cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();
        await TestModels.WaitUntilAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.Replay) == 1), "the resend refused as a replay");
        return dev1;
    }

    /// <summary>The updates in a model's pending segment (the cloud stopped), as the file log holds them; optionally drops them.</summary>
    private static async Task<IReadOnlyList<LoggedUpdate>> LoggedAsync(string dataDirectory, string model, long segment, bool drop = false)
    {
        using var logs = new FileUpdateLog(new CloudDataDirectory(dataDirectory).UpdateLog, flushToDisk: false, int.MaxValue, NullLogger<FileUpdateLog>.Instance);
        var log = await logs.OpenAsync(model, segment);
        if (drop) await log.DropThroughAsync(long.MaxValue);
        return log.Recovered;
    }

    private sealed class StateFile : IDisposable
    {
        private readonly SqliteGrainStorage _storage;

        private StateFile(string path) => _storage = TestGrainStorage.Open(path);

        public static StateFile Open(string dataDirectory) => new(new CloudDataDirectory(dataDirectory).StateDatabase);

        public async Task<T> ReadAsync<T>(string stateName, string key) where T : class, new()
        {
            var state = new GrainState<T>();
            await _storage.ReadStateAsync(stateName, Id(stateName, key), state);
            Assert.True(state.RecordExists, $"no '{stateName}' record for {key}");
            return state.State!;
        }

        /// <summary>Overwrites the record whatever its etag.</summary>
        public Task WriteAsync<T>(string stateName, string key, T value) where T : class, new() => WriteAsync(stateName, Id(stateName, key), value);

        public async Task WriteAsync<T>(string stateName, GrainId id, T value) where T : class, new()
        {
            var state = new GrainState<T>();
            await _storage.ReadStateAsync(stateName, id, state);
            state.State = value;
            await _storage.WriteStateAsync(stateName, id, state);
        }

        public async Task<bool> ExistsAsync<T>(string stateName, GrainId id) where T : class, new()
        {
            var state = new GrainState<T>();
            await _storage.ReadStateAsync(stateName, id, state);
            return state.RecordExists;
        }

        public async Task ClearAsync<T>(string stateName, string key) where T : class, new()
        {
            var state = new GrainState<T>();
            await _storage.ReadStateAsync(stateName, Id(stateName, key), state);
            await _storage.ClearStateAsync(stateName, Id(stateName, key), state);
        }

        // The grain types' names: FederationGrain → "federation", DeviceGrain → "device".
        private static GrainId Id(string stateName, string key) => GrainId.Create(stateName.StartsWith("device", StringComparison.Ordinal) ? "device" : "federation", key);

        public void Dispose()
        {
            _storage.Dispose();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        }
    }
}
