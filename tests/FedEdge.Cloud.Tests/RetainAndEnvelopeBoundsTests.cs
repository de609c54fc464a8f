using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Ingestion;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>What a logged-in device may make the cloud keep: retained messages, and the bytes of an envelope.</summary>
[Collection(ServerCollection.Name)]
public sealed class RetainAndEnvelopeBoundsTests
{
    private static MqttApplicationMessage Message(string topic, byte[] payload, bool retain) =>
        new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithRetainFlag(retain)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build();

    [Fact]
    public async Task RetainIsRefusedOnTelemetry_A32MiBRetainedMessageClosesTheConnection_AndTheRetainedStatusIsKept()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var (_, password, _) = cloud.Registry.Add("dev-1", "f1");
        var telemetry = MqttTopics.Telemetry("f1", "dev-1");

        var (client, _) = await cloud.ConnectAsync("dev-1", "dev-1", password);
        var smallRetained = await client.PublishAsync(Message(telemetry, new byte[1024], retain: true));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, smallRetained.ReasonCode);
        var notRetained = await client.PublishAsync(Message(telemetry, new byte[1024], retain: false));
        Assert.True(notRetained.IsSuccess, $"{notRetained.ReasonCode}");
        var status = await client.PublishAsync(Message(MqttTopics.Status("f1", "dev-1"),
            DeviceStatuses.Create("f1", "dev-1", DeviceState.Online).ToByteArray(), retain: true));
        Assert.True(status.IsSuccess, $"{status.ReasonCode}");
        var oversizedStatus = await client.PublishAsync(Message(MqttTopics.Status("f1", "dev-1"), new byte[DeviceStatuses.MaxStatusBytes + 1], retain: true));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, oversizedStatus.ReasonCode);

        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.DisconnectedAsync += _ => { disconnected.TrySetResult(); return Task.CompletedTask; };
        _ = client.PublishAsync(Message(telemetry, new byte[32 << 20], retain: true)).ContinueWith(_ => { });
        await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(30));

        // Retained messages a device's subscriber would be sent: the status only.
        var service = cloud.Services.GetRequiredService<Security.ServiceIdentity>();
        var (reader, _) = await cloud.ConnectAsync("retain-reader", service.UserName, service.Password, b => b.WithCleanStart());
        var retained = new List<string>();
        var gotStatus = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        reader.ApplicationMessageReceivedAsync += args =>
        {
            lock (retained) retained.Add(args.ApplicationMessage.Topic);
            if (args.ApplicationMessage.Topic.Contains("/status/", StringComparison.Ordinal)) gotStatus.TrySetResult();
            return Task.CompletedTask;
        };
        // One filter over both topics: the broker sends a filter's retained messages together, in one pass.
        await reader.SubscribeAsync($"{MqttTopics.Root}/f1/+/dev-1");
        await gotStatus.Task.WaitAsync(TimeSpan.FromSeconds(10));
        lock (retained) Assert.Equal([MqttTopics.Status("f1", "dev-1")], retained);
    }

    [Fact]
    public async Task ASignedEnvelopeCarryingUnknownFieldsBeyondTheBoundIsRefused_NotStored()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        await using var device = await TestDevice.RegisterAndConnectAsync(cloud, "dev-1", "f1");
        var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
        var started = await federation.StartAsync(TestModels.OpenRounds, new Immutable<byte[]>(TestModels.Logreg()));
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();

        // A real update, signed by the device, with 200 KB of a field the cloud does not know: one frame, under every size
        // limit (the model's largest envelope is 9·d + 1 MiB), so only the unknown-field bound stops it.
        var envelope = UpdateEnvelope.Parser.ParseFrom(device.SignedUpdate(new float[started.ParameterCount], 0));
        envelope.Signature = ByteString.Empty;
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        envelope.WriteTo(output);
        output.WriteTag(100, WireFormat.WireType.LengthDelimited);
        output.WriteLength(200_000);
        output.Flush();
        stream.Write(new byte[200_000]);
        var signed = SignedMessage.Sign(stream.ToArray(), SignedMessage.UpdateEnvelopeDomain, device.Key);
        var frames = UpdateFramer.Frame(signed, envelope.UpdateId.Span);
        Assert.Single(frames);

        await TestDevice.PublishFrameAsync(device.Client, MqttTopics.Update("f1", "dev-1"), frames[0]);
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.Oversized) + metrics.Accepted >= 1), "the update's outcome");
        Assert.Equal(1, metrics.Rejected(RejectionReason.Oversized));
        Assert.Equal(0, metrics.Accepted);
        Assert.Equal(0, (await federation.GetStatusAsync()).PendingUpdates);
    }
}
