using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Ingestion;
using FedEdge.Protocol;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// Rejection paths of the ingestion bridge that the embedded broker's ACL keeps devices from reaching, but a message
/// relayed from an external broker (or by a service client) can: each is refused, counted under its reason, and leaves
/// the model and every other device untouched. The bridge's handler is called directly, as the external broker's
/// subscription calls it; it returns once the message is handled, so the checks after it are not races.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class IngestionRejectionPathTests : IAsyncLifetime
{
    private readonly TempDirectory _data = new();
    private CloudTestHost _cloud = null!;

    public async Task InitializeAsync() => _cloud = await CloudTestHost.StartAsync(_data.Path);

    public async Task DisposeAsync()
    {
        await _cloud.DisposeAsync();
        _data.Dispose();
    }

    private MqttIngestionBridge Bridge => _cloud.Services.GetRequiredService<MqttIngestionBridge>();

    private IngestionMetrics Metrics => _cloud.Services.GetRequiredService<IngestionMetrics>();

    private static MqttApplicationMessage Message(string topic, byte[] payload) =>
        new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).Build();

    [Fact]
    public async Task AnUpdateOnAnotherFederationsTopicIsRefusedAsWrongDevice_AndNeitherFederationTakesIt()
    {
        // Registered before the round starts, so that the round samples it; a silent device keeps the round open, so
        // the pending count shows what was stored.
        var (_, password, key) = _cloud.Registry.Add("dev-1", "f1");
        _cloud.Registry.Add("silent", "f1");
        var f1 = _cloud.Grains.GetGrain<IFederationGrain>("f1");
        var f2 = _cloud.Grains.GetGrain<IFederationGrain>("f2");
        var config = TestModels.OpenRounds;
        var d = (await f1.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        await f2.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()));
        await using var device = await TestDevice.ConnectAsync(_cloud, "dev-1", "f1", password, key);
        var envelope = TestDevice.WholeFrame(device.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0));

        var outcome = await Bridge.HandleAsync(Message(MqttTopics.Update("f2", "dev-1"), envelope));

        Assert.True(outcome.IsTaken); // refused for good: a device must not send it again
        Assert.Equal(1, Metrics.Rejected(RejectionReason.WrongDevice));
        Assert.Equal(0, (await f1.GetStatusAsync()).PendingUpdates);
        Assert.Equal(0, (await f2.GetStatusAsync()).PendingUpdates);

        // The same envelope on its own federation's topic is accepted: only the topic was wrong.
        Assert.True((await Bridge.HandleAsync(Message(MqttTopics.Update("f1", "dev-1"), envelope))).IsTaken);
        Assert.Equal(1, (await f1.GetStatusAsync()).PendingUpdates);
    }

    [Fact]
    public async Task MessagesOnMalformedTopicsAndStatusesOfUnknownDevicesAreTakenAndIgnored_WithoutTouchingAnyDevice()
    {
        _cloud.Registry.Add("dev-1", "f1");
        var online = DeviceStatuses.Create("f1", "ghost", FedEdge.Protocol.Messages.DeviceState.Online).ToByteArray();
        var onlineElsewhere = DeviceStatuses.Create("f2", "dev-1", FedEdge.Protocol.Messages.DeviceState.Online).ToByteArray();

        foreach (var topic in new[] { "fededge/f1/update", "other/f1/update/dev-1", "fededge/f1/unknown-kind/dev-1", "fededge/../update/dev-1" })
            Assert.True((await Bridge.HandleAsync(Message(topic, [1, 2, 3]))).IsTaken, topic);
        Assert.True((await Bridge.HandleAsync(Message(MqttTopics.Status("f1", "ghost"), online))).IsTaken);
        Assert.True((await Bridge.HandleAsync(Message(MqttTopics.Status("f2", "dev-1"), onlineElsewhere))).IsTaken); // another federation's

        Assert.Equal(0, Metrics.FramesReceived);
        Assert.False((await _cloud.Grains.GetGrain<IDeviceGrain>("ghost").GetStatisticsAsync()).Online);
        Assert.False((await _cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Online);

        // A genuine status of dev-1 on its own federation is applied: the handler does apply statuses.
        var own = DeviceStatuses.Create("f1", "dev-1", FedEdge.Protocol.Messages.DeviceState.Online).ToByteArray();
        Assert.True((await Bridge.HandleAsync(Message(MqttTopics.Status("f1", "dev-1"), own))).IsTaken);
        Assert.True((await _cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Online);
    }
}
