using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Tests;

/// <summary>FedDAA topics on the broker: a device reads every cluster model of its federation and only its own assignment.</summary>
[Collection(ServerCollection.Name)]
public sealed class ClusterTopicAccessTests
{
    private static DeviceRecord Device(string id, string federation) => new(id, federation, "$7$1$a$b", new byte[32], false, DateTimeOffset.UnixEpoch);

    [Fact]
    public void PolicyAllowsClusterModelsAndTheOwnAssignmentOnly()
    {
        var device = Device("dev-1", "f1");
        foreach (var allowed in new[]
        {
            MqttTopics.ModelFilter("f1"),
            MqttTopics.AllClusterModelsFilter("f1"),
            MqttTopics.ClusterModelFilter("f1", 3),
            MqttTopics.ClusterModel("f1", 12),
            MqttTopics.ClusterModelChunk("f1", 3, 7, 0),
            "fededge/f1/cluster/+/model/+/+",
            MqttTopics.ClusterAssignment("f1", "dev-1"),
        })
            Assert.True(TopicAccessPolicy.MaySubscribe(device, allowed), allowed);
        foreach (var refused in new[]
        {
            MqttTopics.ClusterAssignment("f1", "dev-2"),
            "fededge/f1/assignment/+",
            "fededge/f1/assignment/#",
            "fededge/f1/cluster/#",
            "fededge/f1/cluster/+/#",
            "fededge/f1/cluster/+/+",
            "fededge/f1/cluster/x/model",
            "fededge/f1/cluster//model",
            "fededge/f1/cluster/3/modelx",
            "fededge/f1/cluster/3/update/dev-1",
            MqttTopics.AllClusterModelsFilter("f2"),
            MqttTopics.ClusterAssignment("f2", "dev-1"),
        })
            Assert.False(TopicAccessPolicy.MaySubscribe(device, refused), refused);
        Assert.False(TopicAccessPolicy.MayPublish(device, MqttTopics.ClusterAssignment("f1", "dev-1")));
        Assert.False(TopicAccessPolicy.MayPublish(device, MqttTopics.ClusterModel("f1", 1)));
    }

    [Fact]
    public void MosquittoAclGivesEachDeviceTheClusterModelsAndItsOwnAssignment()
    {
        var acl = MosquittoConfigWriter.AclFile([Device("dev-1", "f1"), Device("dev-2", "f1")], new ServiceIdentity("cloud-svc", "pw"));
        Assert.Contains("user dev-1\n", acl);
        Assert.Contains("topic read fededge/f1/model/#\ntopic read fededge/f1/cluster/+/model/#\ntopic read fededge/f1/assignment/dev-1\n\nuser dev-2\n", acl);
        Assert.EndsWith("topic read fededge/f1/cluster/+/model/#\ntopic read fededge/f1/assignment/dev-2\n", acl);
        Assert.DoesNotContain("assignment/+", acl);
        Assert.DoesNotContain("write fededge/f1/assignment", acl);
        Assert.DoesNotContain("write fededge/f1/cluster", acl);
    }

    [Fact]
    public async Task EmbeddedBrokerDeliversTheOwnAssignmentOnly_AndRefusesDeviceWritesToClusterTopics()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var (_, password, _) = cloud.Registry.Add("dev-1", "f1");
        cloud.Registry.Add("dev-2", "f1");
        var (device, _) = await cloud.ConnectAsync("dev-1", "dev-1", password);
        var result = await device.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(MqttTopics.AllClusterModelsFilter("f1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.ClusterAssignment("f1", "dev-1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.ClusterAssignment("f1", "dev-2"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("fededge/f1/assignment/+", MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("fededge/f1/cluster/#", MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());
        var codes = result.Items.Select(i => i.ResultCode).ToArray();
        Assert.Equal([MqttClientSubscribeResultCode.GrantedQoS1, MqttClientSubscribeResultCode.GrantedQoS1], codes[..2]);
        Assert.All(codes[2..], c => Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, c));

        foreach (var topic in new[] { MqttTopics.ClusterAssignment("f1", "dev-1"), MqttTopics.ClusterModel("f1", 1) })
        {
            var published = await device.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload([6]).WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
            Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, published.ReasonCode);
        }

        var received = new List<string>();
        device.ApplicationMessageReceivedAsync += e => { lock (received) received.Add(e.ApplicationMessage.Topic); return Task.CompletedTask; };
        var service = (ServiceIdentity)cloud.Services.GetService(typeof(ServiceIdentity))!;
        var (publisher, _) = await cloud.ConnectAsync("publisher", service.UserName, service.Password);
        foreach (var topic in new[] { MqttTopics.ClusterAssignment("f1", "dev-2"), MqttTopics.ClusterModel("f1", 4), MqttTopics.ClusterAssignment("f1", "dev-1") })
            await publisher.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload([1]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        // dev-1's assignment, published last by the same client, is the signal: the broker keeps one publisher's order,
        // so dev-2's assignment, had it been delivered, would have come before it.
        await Eventually.HoldsAsync(() => { lock (received) return Task.FromResult(received.Contains(MqttTopics.ClusterAssignment("f1", "dev-1"))); }, "dev-1's assignment");
        lock (received) Assert.Equal([MqttTopics.ClusterAssignment("f1", "dev-1"), MqttTopics.ClusterModel("f1", 4)], received.Order());
        publisher.Dispose();
        device.Dispose();
    }
}
