using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Grains;
using FedEdge.Cloud.Storage;
using Orleans;
using Orleans.Runtime;
using Orleans.Storage;

namespace FedEdge.Cloud.Tests;

public sealed class SqliteGrainStorageTests : IDisposable
{
    private readonly TempDirectory _data = new();
    private SqliteGrainStorage Open() => TestGrainStorage.Open(Path.Combine(_data.Path, "state.db"), "test");

    private static readonly GrainId Grain = GrainId.Create("device", "dev-1");

    [Fact]
    public async Task StateRoundTripsAndSurvivesReopening()
    {
        var written = new GrainState<DeviceState>(new DeviceState
        {
            Federation = "f1",
            Online = true,
            Accepted = 7,
            BytesAccepted = 1234,
            Rejected = new() { [RejectionReason.BadSignature] = 2 },
            RecentUpdateIds = [1, 2, 3],
        });
        await Open().WriteStateAsync("device", Grain, written);
        Assert.True(written.RecordExists);
        Assert.NotNull(written.ETag);

        var read = new GrainState<DeviceState>();
        await Open().ReadStateAsync("device", Grain, read); // a new provider over the same file: a restart
        Assert.True(read.RecordExists);
        Assert.Equal(written.ETag, read.ETag);
        Assert.Equal("f1", read.State!.Federation);
        Assert.Equal(7, read.State.Accepted);
        Assert.Equal(2, read.State!.Rejected[RejectionReason.BadSignature]);
        Assert.Equal([1, 2, 3], read.State.RecentUpdateIds);

        var missing = new GrainState<DeviceState>();
        await Open().ReadStateAsync("device", GrainId.Create("device", "nobody"), missing);
        Assert.False(missing.RecordExists);
        Assert.Null(missing.ETag);
        Assert.NotNull(missing.State);
    }

    /// <summary>A state whose bytes no longer deserialize (damaged file, or a type changed incompatibly) fails the grain's
    /// activation with an error naming the storage, the state and the grain, instead of handing it an empty state.</summary>
    [Fact]
    public async Task AStateThatCannotBeDeserializedFailsTheReadNamingTheGrain()
    {
        await Open().WriteStateAsync("device", Grain, new GrainState<DeviceState>(new DeviceState { Federation = "f1", Accepted = 3 }));
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(_data.Path, "state.db")}"))
        {
            connection.Open();
            using var damage = connection.CreateCommand();
            damage.CommandText = "UPDATE grain_state SET payload = x'FFFFFFFF0102'";
            Assert.Equal(1, damage.ExecuteNonQuery());
        }

        var error = await Assert.ThrowsAsync<InvalidDataException>(() => Open().ReadStateAsync("device", Grain, new GrainState<DeviceState>()));
        Assert.Contains("'device'", error.Message, StringComparison.Ordinal);
        Assert.Contains("dev-1", error.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(DeviceState), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StaleEtagIsRefused_AndClearRemovesTheRecord()
    {
        var storage = Open();
        var first = new GrainState<DeviceState>(new DeviceState { Accepted = 1 });
        await storage.WriteStateAsync("device", Grain, first);
        var second = new GrainState<DeviceState>();
        await storage.ReadStateAsync("device", Grain, second);

        second.State!.Accepted = 2;
        await storage.WriteStateAsync("device", Grain, second);
        first.State!.Accepted = 99;
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("device", Grain, first));
        // A second writer that believes the record does not exist is refused too.
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("device", Grain, new GrainState<DeviceState>(new DeviceState())));

        var check = new GrainState<DeviceState>();
        await storage.ReadStateAsync("device", Grain, check);
        Assert.Equal(2, check.State!.Accepted);

        await storage.ClearStateAsync("device", Grain, check);
        Assert.False(check.RecordExists);
        var after = new GrainState<DeviceState>();
        await storage.ReadStateAsync("device", Grain, after);
        Assert.False(after.RecordExists);
    }

    [Fact]
    public async Task ConcurrentWritesShareCommits_AndAreAllDurable()
    {
        const int grains = 200;
        using (var storage = Open())
        {
            await Task.WhenAll(Enumerable.Range(0, grains).Select(i => Task.Run(() =>
                storage.WriteStateAsync("device", GrainId.Create("device", $"dev-{i}"), new GrainState<DeviceState>(new DeviceState { Accepted = i })))));
            var (writes, commits) = storage.CommitStatistics;
            Assert.Equal(grains, writes);
            Assert.InRange(commits, 1, grains - 1); // at least two writes shared a transaction
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        using var reopened = Open();
        for (var i = 0; i < grains; i++)
        {
            var read = new GrainState<DeviceState>();
            await reopened.ReadStateAsync("device", GrainId.Create("device", $"dev-{i}"), read);
            Assert.True(read.RecordExists);
            Assert.Equal(i, read.State!.Accepted);
        }
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _data.Dispose();
    }
}
