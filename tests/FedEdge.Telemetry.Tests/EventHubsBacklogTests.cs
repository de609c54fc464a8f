using System.Text;
using FedEdge.Cloud.Telemetry.EventHubs;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Telemetry.Tests;

public sealed class EventHubsBacklogTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    [Fact]
    public void Acknowledged_events_stay_gone_and_the_rest_survive_a_reopen_in_order()
    {
        using (var backlog = Open())
        {
            for (var i = 0; i < 5; i++) Assert.True(backlog.TryAppend(Event(i)));
            var pending = backlog.ReadPending(2, long.MaxValue);
            Assert.Equal(["m0", "m1"], pending.Select(r => r.Event.MessageId));
            backlog.Acknowledge(pending[^1].EndOffset, pending.Count);
            Assert.Equal(3, backlog.PendingCount);
        }
        using var reopened = Open();
        Assert.Equal(3, reopened.PendingCount);
        var rest = reopened.ReadPending(100, long.MaxValue);
        Assert.Equal(["m2", "m3", "m4"], rest.Select(r => r.Event.MessageId));
        Assert.Equal("{\"n\":3}", Encoding.UTF8.GetString(rest[1].Event.Body.Span));
        Assert.Equal(("device-3", "drift-event"), (rest[1].Event.PartitionKey, rest[1].Event.Type));
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_003_000), rest[1].Event.AcceptedAt);
    }

    [Fact]
    public void A_torn_record_from_a_crash_mid_write_is_cut_off_and_appending_goes_on()
    {
        using (var backlog = Open())
            for (var i = 0; i < 3; i++) Assert.True(backlog.TryAppend(Event(i)));
        var segment = Directory.GetFiles(_directory.Path, "*.seg").Single();
        File.AppendAllText(segment, "\u0040\0\0\0torn"); // a header promising 64 bytes, then 4

        using var reopened = Open();
        Assert.Equal(3, reopened.PendingCount);
        Assert.True(reopened.TryAppend(Event(3)));
        Assert.Equal(["m0", "m1", "m2", "m3"], reopened.ReadPending(100, long.MaxValue).Select(r => r.Event.MessageId));
    }

    [Fact]
    public void Bounds_refuse_without_writing_and_confirmed_segments_are_deleted()
    {
        using var backlog = Open(capacityBytes: 4096, capacityEvents: 1000, segmentBytes: 1024);
        var appended = 0;
        while (backlog.TryAppend(Event(appended))) appended++;
        Assert.True(backlog.PendingBytes <= 4096 && backlog.PendingBytes + EventHubsBacklog.RecordBytes(Event(appended)) > 4096);
        Assert.True(Directory.GetFiles(_directory.Path, "*.seg").Length >= 3, "segments should roll at 1 KiB");

        var all = backlog.ReadPending(int.MaxValue, long.MaxValue);
        Assert.Equal(appended, all.Count);
        backlog.Acknowledge(all[^1].EndOffset, all.Count);
        Assert.Equal((0, 0L), (backlog.PendingCount, backlog.PendingBytes));
        Assert.Single(Directory.GetFiles(_directory.Path, "*.seg"));
        Assert.True(backlog.TryAppend(Event(999)));

        using var counted = Open(capacityBytes: 1 << 20, capacityEvents: 2, segmentBytes: 1 << 20, directory: _directory.Combine("count"));
        Assert.True(counted.TryAppend(Event(0)) && counted.TryAppend(Event(1)));
        Assert.False(counted.TryAppend(Event(2)));
    }

    private EventHubsBacklog Open(long capacityBytes = 1 << 20, int capacityEvents = 1000, long segmentBytes = 1 << 20, string? directory = null) =>
        EventHubsBacklog.Open(directory ?? _directory.Path, capacityBytes, capacityEvents, segmentBytes, NullLogger.Instance);

    private static EventHubsEvent Event(int n) =>
        new($"device-{n}", Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"), "drift-event", $"m{n}") { AcceptedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000 + n * 1000) };
}
