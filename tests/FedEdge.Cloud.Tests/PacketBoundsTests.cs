using FedEdge.Cloud.Broker;
using FedEdge.Protocol;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;
using Xunit.Abstractions;

namespace FedEdge.Cloud.Tests;

/// <summary>Bounds the embedded broker enforces before it spends memory: packet sizes and connections per address.</summary>
[Collection(ServerCollection.Name)]
public sealed class PacketBoundsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AConnectAnnouncing200MiBIsRefusedBeforeItsBodyIsRead_AndAllocatesUnder5MiB()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var broker = cloud.Services.GetRequiredService<EmbeddedBroker>();

        // Warm the connection path first, so that what is measured is the attack, not the first connection's JIT.
        using (var warm = await HostileMqttClient.ConnectAsync(cloud.BrokerPort))
        {
            await warm.TryWriteAsync(HostileMqttClient.Connect("ghost", "ghost", "nope"));
            Assert.True((await warm.WaitForCloseAsync(TimeSpan.FromSeconds(10))).Closed);
        }

        GC.Collect();
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        using var attacker = await HostileMqttClient.ConnectAsync(cloud.BrokerPort);
        await attacker.TryWriteAsync([.. HostileMqttClient.FixedHeader(0x10, 200L << 20), .. new byte[4096]]);
        var (closed, _) = await attacker.WaitForCloseAsync(TimeSpan.FromSeconds(15));
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;

        output.WriteLine($"allocated during the attack: {allocated / 1024} KiB");
        Assert.True(closed && allocated < 5L << 20,
            $"connection closed: {closed}; the test process (cloud and broker included) allocated {allocated / 1024} KiB during the attack");
        Assert.True(broker.OversizedPackets >= 1);
    }

    [Fact]
    public async Task APublicationAboveTheLargestFrameClosesTheDevicesConnection_AndAnotherDeviceIsUnaffected()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var broker = cloud.Services.GetRequiredService<EmbeddedBroker>();
        var (_, password, _) = cloud.Registry.Add("dev-big", "f1");
        var (_, honestPassword, _) = cloud.Registry.Add("dev-ok", "f1");

        var (client, result) = await cloud.ConnectAsync("dev-big", "dev-big", password);
        Assert.Equal(MqttClientConnectResultCode.Success, result!.ResultCode);
        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.DisconnectedAsync += _ => { disconnected.TrySetResult(); return Task.CompletedTask; };
        var tooLarge = new byte[cloud.Options.MaxMqttPacketBytes + 1];
        _ = client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Telemetry("f1", "dev-big")).WithPayload(tooLarge)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).ContinueWith(_ => { });
        await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.True(broker.OversizedPackets >= 1);

        var (honest, honestResult) = await cloud.ConnectAsync("dev-ok", "dev-ok", honestPassword);
        Assert.Equal(MqttClientConnectResultCode.Success, honestResult!.ResultCode);
        var largestFrame = new byte[cloud.Options.MaxDeviceFrameBytes];
        var published = await honest.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Telemetry("f1", "dev-ok")).WithPayload(largestFrame)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.True(published.IsSuccess, $"{published.ReasonCode}");
        await honest.DisconnectAsync();
    }

    [Fact]
    public async Task ConnectionsBeyondThePerAddressLimitAreClosedAtOnce_AndFreedSlotsAreReused()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path, o => o.MaxConnectionsPerAddress = 4);
        var broker = cloud.Services.GetRequiredService<EmbeddedBroker>();
        var (_, password, _) = cloud.Registry.Add("dev-1", "f1");

        // The cloud's own service connection, from loopback too, holds one of the four.
        var held = new List<HostileMqttClient>();
        for (var i = 0; i < 3; i++) held.Add(await HostileMqttClient.ConnectAsync(cloud.BrokerPort));
        using var fourth = await HostileMqttClient.ConnectAsync(cloud.BrokerPort);
        var (closed, received) = await fourth.WaitForCloseAsync(TimeSpan.FromSeconds(10));
        Assert.True(closed, "a fourth connection from the same address was kept");
        Assert.Empty(received);
        Assert.Equal(1, broker.RefusedByAddress);
        var (refused, _) = await cloud.ConnectAsync("dev-1", "dev-1", password);
        Assert.False(refused.IsConnected);

        foreach (var h in held) h.Dispose();
        // The broker notices the closed sockets when its read fails: a login succeeds once a slot is free again.
        await Eventually.HoldsAsync(async () =>
        {
            var (client, result) = await cloud.ConnectAsync("dev-1", "dev-1", password);
            using (client) return result?.ResultCode == MqttClientConnectResultCode.Success;
        }, "a login from the address once its held connections closed", TimeSpan.FromSeconds(10));
    }
}
