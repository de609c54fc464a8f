using System.Security.Cryptography;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Ingestion;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MQTTnet;
using MQTTnet.Protocol;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// Chunked updates through the embedded broker, as a device and an attacker see them: a success PUBACK on the chunk that
/// completes an update means it is stored (or refused for good); storage errors and a spent reassembly share get
/// retryable reason codes; the resent update is stored exactly once; a few devices cannot block the others.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ChunkedIngestFaultTests
{
    private static readonly FederationConfig Config = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.Sync,
        RoundDeadline = TimeSpan.FromMinutes(30),
    };

    /// <summary>Logistic regression on 200 features (d = 402): its fp32 update takes 8 chunks of frames of 300 bytes.</summary>
    private static byte[] Model() => FedEdge.Training.Zoo.ModelZoo.Create("logreg", [200], classes: 2, seed: 1).ToByteArray();

    private const int FrameBytes = 300;

    /// <summary>Registers the devices (sampled for round 1) and a silent one, starts the federation, connects the devices.</summary>
    private static async Task<(IFederationGrain Federation, int Dimension, TestDevice[] Devices)> StartAsync(CloudTestHost cloud, params string[] ids)
    {
        // A device that stays silent keeps the round open, so the pending count shows what was stored.
        cloud.Registry.Add("silent", "f1");
        var registered = ids.Select(id => (Id: id, Credentials: cloud.Registry.Add(id, "f1"))).ToList();
        var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
        var started = await federation.StartAsync(Config, new Immutable<byte[]>(Model()));
        var devices = new List<TestDevice>();
        foreach (var (id, (_, password, key)) in registered) devices.Add(await TestDevice.ConnectAsync(cloud, id, "f1", password, key));
        return (federation, started.ParameterCount, [.. devices]);
    }

    private static (byte[] Signed, IReadOnlyList<byte[]> Frames) ChunkedUpdate(TestDevice device, int d, float value = 0.5f)
    {
        var signed = device.SignedUpdate(Enumerable.Repeat(value, d).ToArray(), baseVersion: 0);
        var frames = UpdateFramer.Frame(signed, UpdateEnvelope.Parser.ParseFrom(signed).UpdateId.Span, FrameBytes);
        Assert.True(frames.Count >= 8, $"{frames.Count} chunks");
        return (signed, frames);
    }

    /// <summary>Publishes frames in order as a device does, stopping at the first one refused; returns the reason codes.</summary>
    private static async Task<List<MqttClientPublishReasonCode>> SendAsync(IMqttClient client, string topic, IEnumerable<byte[]> frames)
    {
        var codes = new List<MqttClientPublishReasonCode>();
        foreach (var frame in frames)
        {
            var result = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(frame)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
            // NoMatchingSubscribers is a success too (nobody subscribes to update topics on the embedded broker).
            codes.Add(result.IsSuccess ? MqttClientPublishReasonCode.Success : result.ReasonCode);
            if (!result.IsSuccess) break;
        }
        return codes;
    }

    private static MqttClientPublishReasonCode[] Successes(int n) => Enumerable.Repeat(MqttClientPublishReasonCode.Success, n).ToArray();

    [Fact]
    public async Task AStorageErrorOnTheLastChunkIsRetryable_AndTheChunksSentAgainAreStoredExactlyOnce()
    {
        using var data = new TempDirectory();
        var log = new FaultyUpdateLog();
        await using var cloud = await CloudTestHost.StartAsync(data.Path, afterCloud: log.WrapIn);
        var (federation, d, devices) = await StartAsync(cloud, "dev-1");
        await using var device = devices[0];
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var topic = MqttTopics.Update("f1", "dev-1");
        var (_, frames) = ChunkedUpdate(device, d);

        log.Failing = true;
        var first = await SendAsync(device.Client, topic, frames);
        // Every chunk but the last is only held; the last one completes the update, which could not be stored.
        Assert.Equal([.. Successes(frames.Count - 1), MqttClientPublishReasonCode.ImplementationSpecificError], first);
        Assert.Equal(1, log.Refused);
        Assert.Equal(0, (await federation.GetStatusAsync()).PendingUpdates);

        // Storage fixed: the device sends every chunk again (its outbox kept the update) and each is acknowledged
        // because the update is now stored; before, the id was remembered as complete and the chunks were answered
        // "duplicate" with a success PUBACK while nothing was stored.
        log.Failing = false;
        Assert.Equal(Successes(frames.Count), await SendAsync(device.Client, topic, frames));
        Assert.Equal(1, (await federation.GetStatusAsync()).PendingUpdates);
        Assert.Equal(1, metrics.Accepted);

        // A further redelivery (a PUBACK lost on the way) is acknowledged without storing it a second time.
        Assert.Equal(Successes(frames.Count), await SendAsync(device.Client, topic, frames));
        var status = await federation.GetStatusAsync();
        Assert.Equal(1, status.PendingUpdates);
        Assert.Equal(1, metrics.Accepted);
        Assert.False(status.RejectedTotal.ContainsKey(RejectionReason.Replay));
    }

    [Fact]
    public async Task ADeviceOverItsReassemblyLimitGetsARetryableBusy_AndItsResentUpdateIsStored()
    {
        using var data = new TempDirectory();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cloud = await CloudTestHost.StartAsync(data.Path, configureHost: b => b.Services.AddSingleton(new CloudClock(clock)));
        var (federation, d, devices) = await StartAsync(cloud, "dev-1");
        await using var device = devices[0];
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var topic = MqttTopics.Update("f1", "dev-1");

        // Two updates left incomplete (a restart mid-upload, or a device probing): the most a device may have at once.
        for (var i = 0; i < 2; i++)
        {
            var (_, abandoned) = ChunkedUpdate(device, d, value: i + 1);
            Assert.Equal(Successes(3), await SendAsync(device.Client, topic, abandoned.Take(3)));
        }

        var (_, frames) = ChunkedUpdate(device, d);
        // Refused at once with a retryable code (the agent keeps it); before, all 8 chunks got a success PUBACK and the
        // update was dropped as "Busy".
        Assert.Equal([MqttClientPublishReasonCode.QuotaExceeded], await SendAsync(device.Client, topic, frames));
        Assert.Equal(1, metrics.Rejected(RejectionReason.Busy));
        Assert.Equal(0, (await federation.GetStatusAsync()).PendingUpdates);

        // The abandoned ones expire; the device's next attempt lands.
        clock.Advance(new ReassemblyOptions().Timeout + TimeSpan.FromSeconds(1));
        Assert.Equal(Successes(frames.Count), await SendAsync(device.Client, topic, frames));
        Assert.Equal(1, (await federation.GetStatusAsync()).PendingUpdates);
    }

    [Fact]
    public async Task TheLastChunkOfAnUpdateWhoseEarlierChunksExpiredIsNotAcknowledged()
    {
        using var data = new TempDirectory();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cloud = await CloudTestHost.StartAsync(data.Path, configureHost: b => b.Services.AddSingleton(new CloudClock(clock)));
        var (federation, d, devices) = await StartAsync(cloud, "dev-1");
        await using var device = devices[0];
        var topic = MqttTopics.Update("f1", "dev-1");
        var (_, frames) = ChunkedUpdate(device, d);

        Assert.Equal(Successes(frames.Count - 1), await SendAsync(device.Client, topic, frames.SkipLast(1)));
        clock.Advance(new ReassemblyOptions().Timeout + TimeSpan.FromSeconds(1));
        // The held chunks are gone: a success PUBACK now would make the device drop an update the cloud does not have.
        Assert.Equal([MqttClientPublishReasonCode.ImplementationSpecificError], await SendAsync(device.Client, topic, frames.TakeLast(1)));
        Assert.Equal(Successes(frames.Count), await SendAsync(device.Client, topic, frames));
        Assert.Equal(1, (await federation.GetStatusAsync()).PendingUpdates);
    }

    [Fact]
    public async Task AChunkBombFromFourDevicesNeitherReservesMemoryNorBlocksAnHonestDevicesChunkedUpdate()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path, o =>
        {
            o.MaxEnvelopeMetadataBytes = 64 << 10;
            // Room for three attackers at their full share (3 × 64,712 bytes) and little more.
            o.ReassemblyBudgetBytes = 190 << 10;
            o.ReassemblyShareBytes = 64 << 10;
        });
        var (federation, d, devices) = await StartAsync(cloud, "honest", "bomber-1", "bomber-2", "bomber-3", "bomber-4");
        var bridge = cloud.Services.GetRequiredService<MqttIngestionBridge>();
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var attackers = devices[1..];
        try
        {

            // 1. First chunks announcing 64 MiB each (a few KB sent): refused for good, as no update of this model can be
            // that large; nothing is reserved. Before, 2 per device reserved the whole 512 MiB budget.
            foreach (var attacker in attackers)
                for (var j = 0; j < 2; j++)
                    await SendAsync(attacker.Client, MqttTopics.Update("f1", attacker.Id), [BombChunk(0, 16_384, 64 << 20, new byte[4096])]);
            Assert.Equal(8, metrics.Rejected(RejectionReason.Oversized));
            Assert.Equal(0, bridge.ReassemblyPendingBytes);

            // 2. Real data within the model's limit (67 KiB in 17 chunks), never completed: each device is stopped at its
            // share (the 17th chunk would exceed it), and together they push against the budget: the fourth only fits by
            // evicting the largest holder.
            const int total = 67 << 10, count = 17, size = (total + count - 1) / count;
            foreach (var attacker in attackers)
            {
                var id = RandomNumberGenerator.GetBytes(16);
                var chunks = Enumerable.Range(0, count).Select(i => BombChunk(i, count, total, RandomNumberGenerator.GetBytes(Math.Min(size, total - (i * size))), id));
                var codes = await SendAsync(attacker.Client, MqttTopics.Update("f1", attacker.Id), chunks);
                Assert.Equal([.. Successes(count - 1), MqttClientPublishReasonCode.QuotaExceeded], codes);
            }
            Assert.InRange(bridge.ReassemblyPendingBytes, 150 << 10, 190 << 10);

            // 3. The honest device's chunked update lands while the budget is full of the attackers' chunks.
            var honest = devices[0];
            var (_, frames) = ChunkedUpdate(honest, d);
            Assert.Equal(Successes(frames.Count), await SendAsync(honest.Client, MqttTopics.Update("f1", "honest"), frames));
            Assert.Equal(1, (await federation.GetStatusAsync()).PendingUpdates);
            Assert.Equal(1, metrics.Accepted);
            Assert.True(bridge.ReassemblyPendingBytes <= 190 << 10);
        }
        finally
        {
            foreach (var device in devices) await device.DisposeAsync();
        }
    }

    private static byte[] BombChunk(int index, int count, long total, byte[] data, byte[]? id = null) => new UpdateFrame
    {
        Chunk = new UpdateChunk
        {
            UpdateId = ByteString.CopyFrom(id ?? RandomNumberGenerator.GetBytes(16)),
            Index = index,
            Count = count,
            TotalSize = total,
            TotalSha256 = ByteString.CopyFrom(new byte[32]),
            Data = ByteString.CopyFrom(data),
        },
    }.ToByteArray();
}
