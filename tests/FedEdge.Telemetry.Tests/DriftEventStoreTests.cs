using FedEdge.Cloud.Telemetry.Drift;
using FedEdge.Protocol.Messages;

namespace FedEdge.Telemetry.Tests;

public sealed class DriftEventStoreTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 23, 12, 0, 0, TimeSpan.Zero);
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "fededge-telemetry-tests", Guid.NewGuid().ToString("N"));

    private string DatabasePath => Path.Combine(_directory, "drift-events.db");

    [Fact]
    public async Task Events_written_are_read_back_after_reopening_the_file()
    {
        var written = new List<DriftEvent>();
        {
            var store = new SqliteDriftEventStore(DatabasePath);
            written.Add((await store.AppendAsync(Event("dev-1", DriftKind.Real, T0, "u1") with { PreviousCentre = 0, CurrentCentre = 2, LabelShift = 0.05, FeatureShift = 0.1 }))!);
            written.Add((await store.AppendAsync(Event("dev-2", DriftKind.Virtual, T0.AddMinutes(1), "u2") with { FeatureShift = 1.75 }))!);
            written.Add((await store.AppendAsync(Event("dev-1", DriftKind.Label, T0.AddMinutes(2), "u3") with { LabelShift = 0.4, SampleCount = 640 }))!);
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools(); // a real reopen, not a pooled connection

        var reopened = new SqliteDriftEventStore(DatabasePath);
        var read = await reopened.QueryAsync(new DriftEventQuery());

        Assert.Equal(written, read);
        Assert.Equal([1L, 2L, 3L], read.Select(e => e.Id));
        Assert.Equal(0.4, read[2].LabelShift);
        Assert.Equal(2, read[0].CurrentCentre);
        Assert.Equal(3, await reopened.CountAsync("f1"));
    }

    [Fact]
    public async Task An_update_is_recorded_once_even_when_redelivered()
    {
        var store = new SqliteDriftEventStore(DatabasePath, synchronousFull: false);
        Assert.NotNull(await store.AppendAsync(Event("dev-1", DriftKind.Real, T0, "u1")));
        Assert.Null(await store.AppendAsync(Event("dev-1", DriftKind.Real, T0, "u1")));
        Assert.NotNull(await store.AppendAsync(Event("dev-2", DriftKind.Real, T0, "u1"))); // another device's update id
        Assert.NotNull(await store.AppendAsync(Event("dev-1", DriftKind.Label, T0, null))); // no id: always stored
        Assert.Equal(3, await store.CountAsync());
    }

    [Fact]
    public async Task Queries_filter_by_federation_device_time_and_kind_and_page_by_id()
    {
        var store = new SqliteDriftEventStore(DatabasePath, synchronousFull: false);
        for (var i = 0; i < 10; i++)
            await store.AppendAsync(Event($"dev-{i % 3}", i % 2 == 0 ? DriftKind.Real : DriftKind.Virtual, T0.AddMinutes(i), $"u{i}"));
        await store.AppendAsync(Event("dev-0", DriftKind.Real, T0, "other") with { Federation = "f2" });

        var dev0 = await store.QueryAsync(new DriftEventQuery { Federation = "f1", DeviceId = "dev-0" });
        Assert.Equal([0, 3, 6, 9], dev0.Select(e => (int)(e.DetectedAt - T0).TotalMinutes));

        var window = await store.QueryAsync(new DriftEventQuery { Federation = "f1", Since = T0.AddMinutes(4), Until = T0.AddMinutes(7) });
        Assert.Equal([4, 5, 6], window.Select(e => (int)(e.DetectedAt - T0).TotalMinutes));

        var real = await store.QueryAsync(new DriftEventQuery { Federation = "f1", Kind = DriftKind.Real });
        Assert.Equal(5, real.Count);
        Assert.All(real, e => Assert.Equal(DriftKind.Real, e.Kind));

        var page1 = await store.QueryAsync(new DriftEventQuery { Federation = "f1", Limit = 4 });
        var page2 = await store.QueryAsync(new DriftEventQuery { Federation = "f1", Limit = 4, AfterId = page1[^1].Id });
        var page3 = await store.QueryAsync(new DriftEventQuery { Federation = "f1", Limit = 4, AfterId = page2[^1].Id });
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i), page1.Concat(page2).Concat(page3).Select(e => e.Id));

        Assert.Single(await store.QueryAsync(new DriftEventQuery { Federation = "f2" }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => store.QueryAsync(new DriftEventQuery { Limit = 0 }));
    }

    [Fact]
    public async Task Non_drift_kinds_and_bad_ids_are_refused_with_the_reason()
    {
        var store = new SqliteDriftEventStore(DatabasePath, synchronousFull: false);
        var none = await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync(Event("dev-1", DriftKind.None, T0, "u")));
        Assert.Contains("not a drift", none.Message, StringComparison.Ordinal);
        var badDevice = await Assert.ThrowsAsync<ArgumentException>(() => store.AppendAsync(Event("dev/1", DriftKind.Real, T0, "u")));
        Assert.Contains("device id", badDevice.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Reports_map_to_events_and_no_drift_maps_to_none()
    {
        var report = new DriftReport { Kind = DriftKind.Label, WindowIndex = 4, DetectedUnixMs = T0.ToUnixTimeMilliseconds(), PreviousCentre = 1, CurrentCentre = 1, LabelShift = 0.3, FeatureShift = 0.02, SampleCount = 512 };
        var driftEvent = DriftEvent.FromReport("f1", "dev-1", "ab12", 7, report, T0.AddHours(1))!;
        Assert.Equal((DriftKind.Label, 4L, T0, 7L, "ab12", 0.3, 512L), (driftEvent.Kind, driftEvent.WindowIndex, driftEvent.DetectedAt, driftEvent.ModelVersion, driftEvent.UpdateId, driftEvent.LabelShift, driftEvent.SampleCount));

        Assert.Equal(T0.AddHours(1), DriftEvent.FromReport("f1", "dev-1", "ab12", 7, new DriftReport { Kind = DriftKind.Real }, T0.AddHours(1))!.DetectedAt);
        Assert.Null(DriftEvent.FromReport("f1", "dev-1", "ab12", 7, new DriftReport { Kind = DriftKind.None }, T0));
        Assert.Throws<ArgumentException>(() => DriftEvent.FromReport("f1", "dev-1", "ab12", 7, new DriftReport { Kind = DriftKind.Real, LabelShift = double.NaN }, T0));
    }

    [Fact]
    public void Json_uses_camel_case_and_kind_names_and_round_trips()
    {
        var driftEvent = Event("dev-1", DriftKind.Virtual, T0, "u1") with { Id = 5, FeatureShift = 1.5 };
        var json = System.Text.Encoding.UTF8.GetString(DriftEventJson.Serialize(driftEvent));
        Assert.Contains("\"kind\":\"virtual\"", json, StringComparison.Ordinal);
        Assert.Contains("\"deviceId\":\"dev-1\"", json, StringComparison.Ordinal);
        Assert.Equal(driftEvent, DriftEventJson.Deserialize(System.Text.Encoding.UTF8.GetBytes(json)));
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try { Directory.Delete(_directory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static DriftEvent Event(string device, DriftKind kind, DateTimeOffset detected, string? updateId) => new()
    {
        Federation = "f1",
        DeviceId = device,
        DetectedAt = detected,
        Kind = kind,
        ModelVersion = 3,
        UpdateId = updateId,
        WindowIndex = 2,
    };
}
