using FedEdge.Protocol;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Tests;

[Collection(ServerCollection.Name)]
public sealed class EmbeddedBrokerAccessTests : IAsyncLifetime
{
    private readonly TempDirectory _data = new();
    private CloudTestHost _cloud = null!;

    public async Task InitializeAsync() => _cloud = await CloudTestHost.StartAsync(_data.Path);

    public async Task DisposeAsync()
    {
        await _cloud.DisposeAsync();
        _data.Dispose();
    }

    [Fact]
    public async Task DeviceWithRightPasswordConnects_WrongPasswordAndUnknownDeviceAreRefused()
    {
        var (_, password, _) = _cloud.Registry.Add("dev-a", "fed1");

        var (good, goodResult) = await _cloud.ConnectAsync("dev-a", "dev-a", password);
        Assert.Equal(MqttClientConnectResultCode.Success, goodResult!.ResultCode);
        Assert.True(good.IsConnected);

        var (bad, badResult) = await _cloud.ConnectAsync("dev-a", "dev-a", password + "x");
        Assert.False(bad.IsConnected);
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, badResult?.ResultCode);

        var (unknown, _) = await _cloud.ConnectAsync("ghost", "ghost", password);
        Assert.False(unknown.IsConnected);

        // Right password but another device's client id (would take over its persistent session).
        _cloud.Registry.Add("dev-b", "fed1");
        var (hijack, hijackResult) = await _cloud.ConnectAsync("dev-b", "dev-a", password);
        Assert.False(hijack.IsConnected);
        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, hijackResult?.ResultCode);
    }

    [Fact]
    public async Task RevokedDeviceIsRefused()
    {
        var (_, password, _) = _cloud.Registry.Add("dev-r", "fed1");
        Assert.True(_cloud.Registry.Revoke("dev-r"));
        var (client, result) = await _cloud.ConnectAsync("dev-r", "dev-r", password);
        Assert.False(client.IsConnected);
        Assert.Equal(MqttClientConnectResultCode.Banned, result?.ResultCode);
    }

    [Fact]
    public async Task DeviceRevokedWhileConnectedIsDisconnected()
    {
        var (_, password, _) = _cloud.Registry.Add("dev-c", "fed1");
        var (client, result) = await _cloud.ConnectAsync("dev-c", "dev-c", password);
        Assert.Equal(MqttClientConnectResultCode.Success, result!.ResultCode);
        var broker = (Broker.EmbeddedBroker)_cloud.Services.GetService(typeof(Broker.EmbeddedBroker))!;
        await broker.DisconnectRevokedAsync();
        Assert.True(client.IsConnected);
        _cloud.Registry.Revoke("dev-c");
        await broker.DisconnectRevokedAsync(); // the periodic sweep, run now
        await Eventually.HoldsAsync(() => Task.FromResult(!client.IsConnected), "the revoked device to be disconnected", TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task DeviceMayPublishOnlyToItsOwnTopics()
    {
        var (_, passwordA, _) = _cloud.Registry.Add("dev-a", "fed1");
        _cloud.Registry.Add("dev-b", "fed1");
        var service = _cloud.Services.GetService(typeof(Security.ServiceIdentity)) as Security.ServiceIdentity;
        var (watcher, _) = await _cloud.ConnectAsync("watcher", service!.UserName, service.Password);
        var received = new List<string>();
        watcher.ApplicationMessageReceivedAsync += e => { lock (received) received.Add(e.ApplicationMessage.Topic); return Task.CompletedTask; };
        await watcher.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("fededge/#", MqttQualityOfServiceLevel.AtLeastOnce).Build());

        var (deviceA, _) = await _cloud.ConnectAsync("dev-a", "dev-a", passwordA);
        var other = await deviceA.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Update("fed1", "dev-b")).WithPayload([6, 6, 6]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, other.ReasonCode);
        var model = await deviceA.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Model("fed1")).WithPayload([6]).WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, model.ReasonCode);
        // The device's own update, published last, is the signal: the broker keeps one client's order, so the refused
        // publications, had they been routed, would have reached the watcher first.
        var own = await deviceA.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Update("fed1", "dev-a")).WithPayload([1, 2, 3]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.True(own.IsSuccess);
        await Eventually.HoldsAsync(() => { lock (received) return received.Contains(MqttTopics.Update("fed1", "dev-a")); }, "dev-a's own update at the watcher");
        lock (received)
        {
            Assert.Contains(MqttTopics.Update("fed1", "dev-a"), received);
            Assert.DoesNotContain(MqttTopics.Update("fed1", "dev-b"), received);
            Assert.DoesNotContain(MqttTopics.Model("fed1"), received);
        }
    }

    [Fact]
    public async Task DeviceMaySubscribeOnlyToItsFederationsModelTopics()
    {
        var (_, password, _) = _cloud.Registry.Add("dev-a", "fed1");
        var (device, _) = await _cloud.ConnectAsync("dev-a", "dev-a", password);
        var result = await device.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(MqttTopics.ModelFilter("fed1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.ModelFilter("fed2"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.UpdateFilter("fed1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("#", MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("fededge/+/model/#", MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());
        var codes = result.Items.Select(i => i.ResultCode).ToArray();
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, codes[0]);
        Assert.All(codes[1..], c => Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, c));
    }

    [Fact]
    public async Task LastWillOnAnotherDevicesTopicIsDropped()
    {
        var (_, passwordA, _) = _cloud.Registry.Add("dev-a", "fed1");
        var (_, passwordC, _) = _cloud.Registry.Add("dev-c", "fed1");
        _cloud.Registry.Add("dev-b", "fed1");
        var service = (Security.ServiceIdentity)_cloud.Services.GetService(typeof(Security.ServiceIdentity))!;
        var (watcher, _) = await _cloud.ConnectAsync("watcher", service.UserName, service.Password);
        var received = new List<(string Topic, string Payload)>();
        watcher.ApplicationMessageReceivedAsync += e =>
        {
            lock (received) received.Add((e.ApplicationMessage.Topic, e.ApplicationMessage.ConvertPayloadToString()));
            return Task.CompletedTask;
        };
        await watcher.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("fededge/+/status/+", MqttQualityOfServiceLevel.AtLeastOnce).Build());

        var (forger, _) = await _cloud.ConnectAsync("dev-a", "dev-a", passwordA,
            b => b.WithWillTopic(MqttTopics.Status("fed1", "dev-b")).WithWillPayload("forged"));
        var (honest, _) = await _cloud.ConnectAsync("dev-c", "dev-c", passwordC,
            b => b.WithWillTopic(MqttTopics.Status("fed1", "dev-c")).WithWillPayload("offline"));
        // Dropping the connection without DISCONNECT makes the broker publish the wills.
        // Both wills were dispatched: the honest one arrived, and the forged one was refused by the broker's ACL.
        var broker = (Broker.EmbeddedBroker)_cloud.Services.GetService(typeof(Broker.EmbeddedBroker))!;
        var refusedBefore = broker.RefusedPublications;
        forger.Dispose();
        honest.Dispose();
        await Eventually.HoldsAsync(() => { lock (received) return received.Contains((MqttTopics.Status("fed1", "dev-c"), "offline")); }, "dev-c's will");
        await Eventually.HoldsAsync(() => broker.RefusedPublications > refusedBefore, "the forged will refused");
        lock (received)
        {
            Assert.Contains((MqttTopics.Status("fed1", "dev-c"), "offline"), received);
            Assert.DoesNotContain(received, m => m.Topic == MqttTopics.Status("fed1", "dev-b"));
        }
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ServerCollection
{
    public const string Name = "servers";
}
