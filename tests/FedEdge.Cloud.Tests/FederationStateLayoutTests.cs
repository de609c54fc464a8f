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
        Mode = FederationMode.FedBuff,
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
            await Eventually.HoldsAsync(() => Task.FromResult(cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>().Rejected(RejectionReason.Replay) == 2), "both resends refused");
            Assert.Equal(1, (await federation.GetStatusAsync()).ModelVersion);
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
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 2, "two pending updates");
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
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "v1 after the restart");
        var v1 = (await federation.GetModelAsync())!.Parameters;
        for (var i = 0; i < run.D; i++) Assert.Equal(run.V0[i] + 3f, v1[i], 1e-5f);
        status = await federation.GetStatusAsync();
        var round = Assert.Single(status.History);
        Assert.Equal(1, round.Version);
        Assert.Equal(3, round.Updates);
        Assert.Equal(3, status.AcceptedTotal);
        var metrics = cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.Replay) == 1), "the resend refused as a replay");
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
