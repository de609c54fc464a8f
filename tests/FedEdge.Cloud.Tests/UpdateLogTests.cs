using FedEdge.Cloud.Grains;
using FedEdge.Cloud.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Orleans.Storage;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// The update log's contract, for both implementations: the file log (single silo) and the grain-storage log (run here
/// over the SQLite grain storage; the Redis restart scenario in <see cref="IngestionTests"/> runs it over Redis).
/// </summary>
public sealed class UpdateLogTests : IDisposable
{
    private readonly TempDirectory _data = new();
    private readonly List<IDisposable> _opened = [];

    public static TheoryData<string> Kinds => ["file", "grain-storage"];

    /// <summary>A log over the same data as every other log this test opened of that kind (a restart reopens it).</summary>
    private IUpdateLog Logs(string kind)
    {
        if (kind == "file")
        {
            var file = new FileUpdateLog(Path.Combine(_data.Path, "update-log"), flushToDisk: true, maxEnvelopeBytes: 1 << 20, NullLogger<FileUpdateLog>.Instance);
            _opened.Add(file);
            return file;
        }
        var storage = TestGrainStorage.Open(Path.Combine(_data.Path, "state.db"));
        _opened.Add(storage);
        return new GrainStorageUpdateLog(storage, NullLogger<GrainStorageUpdateLog>.Instance);
    }

    private static LoggedUpdate Update(string device, int n, double? loss = null) => new(
        new PendingUpdate(device, $"u{n:D2}", BaseVersion: n, SampleCount: 10 + n, Bytes: 100 + n, TrainLoss: loss,
            ReceivedAt: new DateTimeOffset(2026, 12, 4, 20, 0, 0, TimeSpan.Zero).AddSeconds(n)),
        Enumerable.Range(0, 50 + n).Select(i => (byte)(i * n)).ToArray());

    private static void AssertSame(IEnumerable<LoggedUpdate> expected, IEnumerable<LoggedUpdate> actual)
    {
        var e = expected.ToList();
        var a = actual.ToList();
        Assert.Equal(e.Select(u => u.Update), a.Select(u => u.Update));
        for (var i = 0; i < e.Count; i++) Assert.Equal(e[i].Envelope.ToArray(), a[i].Envelope.ToArray());
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task AReopenedLogHoldsThePendingSegmentInOrder_EachUpdateOnce(string kind)
    {
        var log = await Logs(kind).OpenAsync("fa", pending: 1);
        Assert.Empty(log.Recovered);
        var updates = new[] { Update("dev-1", 1, loss: 0.25), Update("dev-2", 2), Update("dev-1", 3, loss: double.Epsilon) };
        foreach (var u in updates) await log.AppendAsync(1, u);
        await log.AppendAsync(1, updates[1]); // the same update twice (an interrupted migration repeats its appends)

        var reopened = await Logs(kind).OpenAsync("fa", pending: 1);
        AssertSame(updates, reopened.Recovered);
        Assert.Empty((await Logs(kind).OpenAsync("other-model", pending: 1)).Recovered);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task OpeningDiscardsTheSegmentsBeforeAndAfterThePendingOne_AndDropRemovesThroughAVersion(string kind)
    {
        var log = await Logs(kind).OpenAsync("fa", pending: 1);
        await log.AppendAsync(1, Update("dev-1", 1));
        await log.AppendAsync(2, Update("dev-1", 2));
        await log.AppendAsync(3, Update("dev-1", 3));
        await log.AppendAsync(4, Update("dev-1", 4));
        await log.DropThroughAsync(1);

        // Pending at v2 + 1 = 3: segment 2 was aggregated, segment 4 written by a commit that never completed.
        AssertSame([Update("dev-1", 3)], (await Logs(kind).OpenAsync("fa", pending: 3)).Recovered);
        Assert.Empty((await Logs(kind).OpenAsync("fa", pending: 2)).Recovered);
        Assert.Empty((await Logs(kind).OpenAsync("fa", pending: 4)).Recovered);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task ConcurrentAppendsAreAllDurable(string kind)
    {
        var log = await Logs(kind).OpenAsync("fa", pending: 1);
        var updates = Enumerable.Range(0, 64).Select(i => Update($"dev-{i % 8}", i)).ToArray();
        await Task.WhenAll(updates.Select(u => Task.Run(() => log.AppendAsync(1, u))));
        var recovered = (await Logs(kind).OpenAsync("fa", pending: 1)).Recovered;
        AssertSame(updates, recovered.OrderBy(u => u.Update.BaseVersion));
    }

    /// <summary>A crash mid-append leaves a torn last record (never acknowledged): it is cut off, and appends go on after the last whole one.</summary>
    [Fact]
    public async Task ATornTailIsCutOff_AndTheNextAppendFollowsTheLastWholeRecord()
    {
        var log = await Logs("file").OpenAsync("fa", pending: 1);
        await log.AppendAsync(1, Update("dev-1", 1));
        await log.AppendAsync(1, Update("dev-2", 2));
        await log.AppendAsync(1, Update("dev-3", 3));
        var segment = Directory.GetFiles(Path.Combine(_data.Path, "update-log", "fa")).Single();
        var whole = new FileInfo(segment).Length;
        DisposeOpened();
        using (var file = File.OpenWrite(segment)) file.SetLength(whole - 7);

        log = await Logs("file").OpenAsync("fa", pending: 1);
        AssertSame([Update("dev-1", 1), Update("dev-2", 2)], log.Recovered);
        var third = whole - (UpdateLogRecord.HeaderBytes + UpdateLogRecord.EncodeHead(Update("dev-3", 3)).Length - UpdateLogRecord.HeaderBytes + Update("dev-3", 3).Envelope.Length);
        Assert.Equal(third, new FileInfo(segment).Length);
        await log.AppendAsync(1, Update("dev-4", 4));
        AssertSame([Update("dev-1", 1), Update("dev-2", 2), Update("dev-4", 4)], (await Logs("file").OpenAsync("fa", pending: 1)).Recovered);
    }

    /// <summary>A crash just after a record's first bytes: a header shorter than a header is cut off as well.</summary>
    [Fact]
    public async Task ATornRecordHeaderIsCutOff_AndTheLogGoesOnAfterTheLastWholeRecord()
    {
        var log = await Logs("file").OpenAsync("fa", pending: 1);
        await log.AppendAsync(1, Update("dev-1", 1));
        var segment = Directory.GetFiles(Path.Combine(_data.Path, "update-log", "fa")).Single();
        var whole = new FileInfo(segment).Length;
        DisposeOpened();
        using (var file = new FileStream(segment, FileMode.Append)) file.Write(new byte[UpdateLogRecord.HeaderBytes / 2]);

        log = await Logs("file").OpenAsync("fa", pending: 1);
        AssertSame([Update("dev-1", 1)], log.Recovered);
        Assert.Equal(whole, new FileInfo(segment).Length);
        await log.AppendAsync(1, Update("dev-2", 2));
        AssertSame([Update("dev-1", 1), Update("dev-2", 2)], (await Logs("file").OpenAsync("fa", pending: 1)).Recovered);
    }

    [Fact]
    public async Task ADamagedRecordEndsTheSegment_WithTheRecordsBeforeItKept()
    {
        var log = await Logs("file").OpenAsync("fa", pending: 1);
        await log.AppendAsync(1, Update("dev-1", 1));
        await log.AppendAsync(1, Update("dev-2", 2));
        var segment = Directory.GetFiles(Path.Combine(_data.Path, "update-log", "fa")).Single();
        DisposeOpened();
        var bytes = File.ReadAllBytes(segment);
        bytes[^3] ^= 0x40; // a flipped bit in the second envelope
        File.WriteAllBytes(segment, bytes);

        AssertSame([Update("dev-1", 1)], (await Logs("file").OpenAsync("fa", pending: 1)).Recovered);
    }

    [Fact]
    public async Task AnEnvelopeAboveTheLimitIsRefusedBeforeAnythingIsWritten()
    {
        var log = await Logs("file").OpenAsync("fa", pending: 1);
        var huge = new LoggedUpdate(Update("dev-1", 1).Update, new byte[(1 << 20) + 1]);
        var error = await Assert.ThrowsAsync<ArgumentException>(() => log.AppendAsync(1, huge));
        Assert.Contains("exceeds the log's limit", error.Message);
        Assert.Empty((await Logs("file").OpenAsync("fa", pending: 1)).Recovered);
    }

    /// <summary>
    /// The grain-storage log's index lists an update whose envelope record is missing (its write failed, so it was never
    /// acknowledged): opening skips it, keeps the others, and rewrites the index without it.
    /// </summary>
    [Fact]
    public async Task TheGrainStorageLogSkipsAnUpdateWhoseEnvelopeRecordIsMissing()
    {
        var logs = Logs("grain-storage");
        var log = await logs.OpenAsync("fa", pending: 1);
        await log.AppendAsync(1, Update("dev-1", 1));
        await log.AppendAsync(1, Update("dev-2", 2));
        var storage = (SqliteGrainStorage)_opened[^1];
        var lost = Update("dev-2", 2).Update;
        await new StorageRecord<StoredUpdate>(storage, "update-log-entry",
            Orleans.Runtime.GrainId.Create("fededge-update-log-entry", $"fa/1/{lost.DeviceId}/{lost.UpdateId}")).ClearAsync();

        AssertSame([Update("dev-1", 1)], (await logs.OpenAsync("fa", pending: 1)).Recovered);
        var index = new GrainState<UpdateLogIndex>(new UpdateLogIndex());
        await storage.ReadStateAsync("update-log", Orleans.Runtime.GrainId.Create("fededge-update-log", "fa"), index);
        Assert.Equal([Update("dev-1", 1).Update], index.State!.Segments[1]);
    }

    /// <summary>
    /// A full disk (the segment is /dev/full, which refuses every write with ENOSPC): the append fails with the system's
    /// error, and the segment, whose failed write could not be cut off, refuses further appends until its model reopens it.
    /// </summary>
    [Fact]
    public async Task AFullDiskFailsTheAppendWithItsError_AndTheSegmentTakesNoMoreAppendsUntilReopened()
    {
        Assert.True(File.Exists("/dev/full"), "needs /dev/full");
        var log = await Logs("file").OpenAsync("fa", pending: 1);
        var directory = Path.Combine(_data.Path, "update-log", "fa");
        Directory.CreateDirectory(directory);
        File.CreateSymbolicLink(Path.Combine(directory, 1L.ToString("D19", System.Globalization.CultureInfo.InvariantCulture) + ".log"), "/dev/full");

        var full = await Assert.ThrowsAsync<IOException>(() => log.AppendAsync(1, Update("dev-1", 1)));
        Assert.Contains("space", full.Message, StringComparison.OrdinalIgnoreCase);
        var refused = await Assert.ThrowsAsync<IOException>(() => log.AppendAsync(1, Update("dev-1", 2)));
        Assert.Contains("reopens it", refused.Message);
        await log.AppendAsync(2, Update("dev-1", 3)); // other segments are unaffected
    }

    private void DisposeOpened()
    {
        foreach (var opened in _opened) opened.Dispose();
        _opened.Clear();
    }

    public void Dispose()
    {
        DisposeOpened();
        _data.Dispose();
    }
}
