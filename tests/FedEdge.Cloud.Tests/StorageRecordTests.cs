using FedEdge.Cloud.Grains;
using FedEdge.Cloud.Storage;
using Orleans.Runtime;
using Orleans.Storage;

namespace FedEdge.Cloud.Tests;

/// <summary>The update log's records: deleted with the ETag of their write or read, without reading the envelope back.</summary>
public sealed class StorageRecordTests : IDisposable
{
    private readonly TempDirectory _data = new();
    private readonly SqliteGrainStorage _sqlite;
    private readonly CountingStorage _storage;

    public StorageRecordTests()
    {
        _sqlite = TestGrainStorage.Open(Path.Combine(_data.Path, "state.db"), "test");
        _storage = new CountingStorage(_sqlite);
    }

    private StorageRecord<StoredUpdate> Record(string key) => new(_storage, "update", GrainId.Create("fededge-update", key));

    [Fact]
    public async Task AWrittenRecordIsClearedWithoutAReadAndIsGone()
    {
        await Record("f/d/1").WriteAsync(new StoredUpdate { Envelope = [9] }); // another record, kept
        var record = Record("f/d/2");
        await record.WriteAsync(new StoredUpdate { Envelope = [1, 2, 3] });
        await record.ClearAsync();
        Assert.Equal(0, _storage.Reads);

        Assert.Null(await Record("f/d/2").ReadAsync());
        Assert.Equal([9], (await Record("f/d/1").ReadAsync())!.Envelope);
    }

    [Fact]
    public async Task ARecordReadOnceIsClearedWithoutASecondRead()
    {
        await Record("f/d/1").WriteAsync(new StoredUpdate { Envelope = [1] });
        var replayed = Record("f/d/1");
        Assert.Equal([1], (await replayed.ReadAsync())!.Envelope);
        await replayed.ClearAsync();
        Assert.Equal(1, _storage.Reads);
        Assert.Null(await Record("f/d/1").ReadAsync());
    }

    [Fact]
    public async Task ARecordChangedSinceItsWriteIsStillCleared_AndClearingAMissingOneIsHarmless()
    {
        var first = Record("f/d/1");
        await first.WriteAsync(new StoredUpdate { Envelope = [1] });
        await Record("f/d/1").WriteAsync(new StoredUpdate { Envelope = [2] }); // a second attempt overwrote it: new ETag
        await first.ClearAsync(); // its ETag is stale: falls back to a read
        Assert.Null(await Record("f/d/1").ReadAsync());

        await Record("f/d/never").ClearAsync();
        await first.ClearAsync();
        Assert.Null(await Record("f/d/1").ReadAsync());
    }

    public void Dispose()
    {
        _sqlite.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _data.Dispose();
    }

    /// <summary>Counts the reads that reach the provider.</summary>
    private sealed class CountingStorage(IGrainStorage inner) : IGrainStorage
    {
        public int Reads { get; private set; }

        public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
        {
            Reads++;
            return inner.ReadStateAsync(stateName, grainId, grainState);
        }

        public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => inner.WriteStateAsync(stateName, grainId, grainState);

        public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => inner.ClearStateAsync(stateName, grainId, grainState);
    }
}
