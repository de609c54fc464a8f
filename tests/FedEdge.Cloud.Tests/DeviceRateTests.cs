using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Storage;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Protocol;
using Orleans.Concurrency;
using Orleans.Storage;

namespace FedEdge.Cloud.Tests;

/// <summary>Per-device rates (token buckets on the cloud's clock), aggregated refusal logs, and status writes.</summary>
[Collection(ServerCollection.Name)]
public sealed class DeviceRateTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const string RefusalCategory = "FedEdge.Cloud.Refusals";

    [Fact]
    public void ATokenBucketRefillsOnTheInjectedClockOnly()
    {
        var time = new FakeTimeProvider();
        var bucket = new TokenBucket(time, perSecond: 2, burst: 3);
        Assert.True(bucket.TryTake() && bucket.TryTake() && bucket.TryTake());
        Assert.False(bucket.TryTake());
        Assert.Equal(TimeSpan.FromSeconds(0.5), bucket.UntilNextToken);
        time.Advance(TimeSpan.FromSeconds(0.5));
        Assert.True(bucket.TryTake());
        Assert.False(bucket.TryTake());
        time.Advance(TimeSpan.FromHours(1)); // capped at the burst
        Assert.True(bucket.TryTake() && bucket.TryTake() && bucket.TryTake());
        Assert.False(bucket.TryTake());
    }

    [Fact]
    public void RefusalsAreWrittenAsOneLinePerIntervalWithACountPerSubjectAndReason()
    {
        var time = new FakeTimeProvider();
        using var capture = new CapturingLoggerProvider();
        using var log = new RejectionLog(capture.CreateLogger(RefusalCategory), time, TimeSpan.FromMinutes(1));
        for (var i = 0; i < 1000; i++) log.Record("dev-1", "Malformed", $"frame {i}");
        for (var i = 0; i < 3; i++) log.Record("10.0.0.9", "TooManyConnections", "over 1000");
        Assert.Empty(capture.Messages(RefusalCategory));

        time.Advance(TimeSpan.FromMinutes(1));
        var line = Assert.Single(capture.Messages(RefusalCategory));
        Assert.Contains("dev-1 Malformed ×1000 (first: frame 0)", line);
        Assert.Contains("10.0.0.9 TooManyConnections ×3", line);

        time.Advance(TimeSpan.FromMinutes(5)); // nothing refused since: no more lines
        Assert.Single(capture.Messages(RefusalCategory));
        Assert.Equal(1003, log.Total);
    }

    [Fact]
    public async Task AJunkFloodCostsOneLogLine_AndBeyondTheRefusedFrameBurstFramesAreRefusedUnreadUntilTheBucketRefills()
    {
        using var data = new TempDirectory();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var capture = new CapturingLoggerProvider();
        await using var cloud = await CloudTestHost.StartAsync(data.Path,
            o => { o.DeviceRejectedFrameBurst = 20; o.DeviceRejectedFramesPerSecond = 1; },
            b => { b.Services.AddSingleton(new CloudClock(time)); b.Logging.AddProvider(capture); });
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var (_, password, _) = cloud.Registry.Add("dev-1", "f1");
        var (client, _) = await cloud.ConnectAsync("dev-1", "dev-1", password);

        var codes = new List<MqttClientPublishReasonCode>();
        for (var i = 0; i < 50; i++)
        {
            var result = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Update("f1", "dev-1"))
                .WithPayload(new byte[] { 0x0A, 0xFF, 1, 2, 3 }).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
            codes.Add(result.ReasonCode);
        }
        // The federation f1 was never started: each frame read is refused as UnknownFederation (for good: a success PUBACK, no subscriber).
        Assert.Equal(20, metrics.Rejected(RejectionReason.UnknownFederation));
        Assert.All(codes.Take(20), c => Assert.Equal(MqttClientPublishReasonCode.NoMatchingSubscribers, c)); // taken (success)
        Assert.All(codes.Skip(20), c => Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, c));
        Assert.DoesNotContain(capture.Lines, l => l.Level >= LogLevel.Warning && l.Message.Contains("dev-1", StringComparison.Ordinal));

        time.Advance(TimeSpan.FromMinutes(1));
        var line = Assert.Single(capture.Messages(RefusalCategory));
        Assert.Contains("dev-1 RateLimited ×30", line);
        Assert.Contains("dev-1 UnknownFederation ×20", line);

        // Refilled on the cloud's clock (60 s × 1/s, capped at 20): the device's frames are read again.
        var again = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Update("f1", "dev-1"))
            .WithPayload(new byte[] { 0x0A, 0xFF, 1, 2, 3 }).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.True(again.IsSuccess, $"{again.ReasonCode}");
        Assert.Equal(21, metrics.Rejected(RejectionReason.UnknownFederation));
        await client.DisconnectAsync();
    }

    [Fact]
    public async Task TwoThousandStatusTogglesKeepStateWritesBounded_AndTheLastStatusHolds()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path, o => { o.DeviceStatusBurst = 5; o.DeviceStatusPerSecond = 2; });
        var storage = (SqliteGrainStorage)cloud.Services.GetRequiredKeyedService<IGrainStorage>(CloudHostExtensions.StorageName);
        var bridge = cloud.Services.GetRequiredService<MqttIngestionBridge>();
        await using var device = await TestDevice.RegisterAndConnectAsync(cloud, "dev-1", "f1");
        var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
        await federation.StartAsync(TestModels.OpenRounds, new Immutable<byte[]>(TestModels.Logreg()));
        var deviceGrain = cloud.Grains.GetGrain<IDeviceGrain>("dev-1");
        await deviceGrain.GetStatisticsAsync();
        var writesBefore = storage.WriteCount;

        const int toggles = 2000;
        for (var i = 0; i < toggles; i++)
        {
            var state = i % 2 == 0 ? DeviceState.Online : DeviceState.Offline; // the last one (i = 1999): offline
            await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Status("f1", "dev-1"))
                .WithPayload(DeviceStatuses.Create("f1", "dev-1", state).ToByteArray()).WithRetainFlag()
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        }
        await Eventually.HoldsAsync(async () => bridge.StatusesReceived == toggles && !(await deviceGrain.GetStatisticsAsync()).Online,
            "every status received and the last one (offline) applied", timeout: TimeSpan.FromSeconds(60));
        var writes = storage.WriteCount - writesBefore;
        output.WriteLine($"{writes} state writes for {toggles} toggles; {bridge.CoalescedStatuses} coalesced");

        // Applied: the burst (5) at once, then the latest every 0.5 s while the toggles last; each applied change writes the
        // device's state and the federation's live set. Before: 2 writes per toggle.
        Assert.True(writes < 100, $"{writes} state writes for {toggles} status toggles");
        Assert.True(bridge.CoalescedStatuses > toggles / 2, $"{bridge.CoalescedStatuses} coalesced");
    }
}
