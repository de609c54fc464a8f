using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Security;
using FedEdge.Compression;
using FedEdge.Protocol;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>The cloud against an external Mosquitto configured from the registry's exported files.</summary>
[Collection(ServerCollection.Name)]
public sealed class MosquittoTests : IAsyncLifetime
{
    private readonly TempDirectory _data = new();
    private readonly Dictionary<string, (string Password, byte[] Key)> _devices = [];
    private MosquittoServer _broker = null!;
    private const string Operator = "test-operator";
    private const string OperatorPassword = "operator-secret";
    private CloudTestHost _cloud = null!;

    public async Task InitializeAsync()
    {
        Assert.True(MosquittoServer.IsInstalled, MosquittoServer.InstallHint);
        var data = new CloudDataDirectory(_data.Path);
        var registry = new DeviceRegistry(data.RegistryDatabase);
        foreach (var (id, federation) in new[] { ("dev-1", "f1"), ("dev-2", "f1"), ("dev-x", "f2"), ("dev-r", "f1") })
        {
            var (_, password, key) = registry.Add(id, federation);
            _devices[id] = (password, key);
        }
        registry.Revoke("dev-r");
        var service = ServiceIdentity.LoadOrCreate(data.ServiceCredentials);
        var passwd = Path.Combine(_data.Path, "mosquitto.passwd");
        var acl = Path.Combine(_data.Path, "mosquitto.acl");
        MosquittoConfigWriter.Write(registry, service, passwd, acl);
        // The client id is the user name (use_username_as_clientid): a second connection as the service user would take
        // over the cloud's own, so the tests' privileged clients log in as an operator with the same rights.
        await File.AppendAllTextAsync(passwd, $"{Operator}:{MosquittoPasswordHash.Create(OperatorPassword)}\n");
        await File.AppendAllTextAsync(acl, $"\nuser {Operator}\ntopic readwrite #\n");
        // The shipped configuration's settings (deploy/mosquitto/mosquitto.conf), with this test's listener and files.
        _broker = await MosquittoServer.StartAsync(new MosquittoOptions { Directory = _data.Path, PasswordFile = passwd, AclFile = acl, ShippedSettings = true });
        _cloud = await CloudTestHost.StartAsync(_data.Path, o => o.Broker = _broker.Address);
    }

    public async Task DisposeAsync()
    {
        await _cloud.DisposeAsync();
        _broker.Dispose();
        _data.Dispose();
    }

    [Fact]
    public async Task MosquittoAuthenticatesWithTheExportedHashes()
    {
        var (good, goodResult) = await _cloud.ConnectAsync("dev-1", "dev-1", _devices["dev-1"].Password);
        Assert.Equal(MqttClientConnectResultCode.Success, goodResult?.ResultCode);
        var (_, badResult) = await _cloud.ConnectAsync("dev-2", "dev-2", _devices["dev-1"].Password);
        Assert.NotEqual(MqttClientConnectResultCode.Success, badResult?.ResultCode ?? MqttClientConnectResultCode.UnspecifiedError);
        var (_, revokedResult) = await _cloud.ConnectAsync("dev-r", "dev-r", _devices["dev-r"].Password);
        Assert.NotEqual(MqttClientConnectResultCode.Success, revokedResult?.ResultCode ?? MqttClientConnectResultCode.UnspecifiedError);
        await good.DisconnectAsync();
    }

    [Fact]
    public async Task ADeviceCannotTakeOverAnotherDevicesSessionWithItsClientId()
    {
        var (victim, victimResult) = await _cloud.ConnectAsync("dev-1", "dev-1", _devices["dev-1"].Password);
        Assert.Equal(MqttClientConnectResultCode.Success, victimResult?.ResultCode);
        var disconnected = 0;
        victim.DisconnectedAsync += _ => { Interlocked.Increment(ref disconnected); return Task.CompletedTask; };
        // dev-2 logs in with its own credentials but dev-1's client id: Mosquitto uses the user name as client id, so
        // the login succeeds as dev-2 and dev-1's session stays. Without use_username_as_clientid dev-1 was cut off here.
        var (intruder, intruderResult) = await _cloud.ConnectAsync("dev-1", "dev-2", _devices["dev-2"].Password);
        Assert.Equal(MqttClientConnectResultCode.Success, intruderResult?.ResultCode);
        var published = await victim.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Telemetry("f1", "dev-1")).WithPayload([1])
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.True(published.IsSuccess, $"dev-1 still connected: {published.ReasonCode}");
        Assert.True(victim.IsConnected);
        Assert.Equal(0, Volatile.Read(ref disconnected));
        await intruder.DisconnectAsync();
        await victim.DisconnectAsync();
    }

    [Fact]
    public async Task MosquittoEnforcesTheExportedAcl()
    {
        var (watcher, _) = await _cloud.ConnectAsync("watcher", Operator, OperatorPassword);
        var received = new List<string>();
        watcher.ApplicationMessageReceivedAsync += e => { lock (received) received.Add(e.ApplicationMessage.Topic); return Task.CompletedTask; };
        await watcher.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("fededge/+/telemetry/+", MqttQualityOfServiceLevel.AtLeastOnce).Build());

        var (device, _) = await _cloud.ConnectAsync("dev-1", "dev-1", _devices["dev-1"].Password);
        await device.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Telemetry("f1", "dev-2")).WithPayload([6]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await device.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Telemetry("f1", "dev-1")).WithPayload([1]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await Eventually.HoldsAsync(() => { lock (received) return Task.FromResult(received.Contains(MqttTopics.Telemetry("f1", "dev-1"))); }, "dev-1's own telemetry");
        lock (received) Assert.DoesNotContain(MqttTopics.Telemetry("f1", "dev-2"), received);

        // Mosquitto 2.0 grants any subscription and applies the read ACL on delivery: check what arrives.
        var delivered = new List<string>();
        device.ApplicationMessageReceivedAsync += e => { lock (delivered) delivered.Add(e.ApplicationMessage.Topic); return Task.CompletedTask; };
        await device.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(MqttTopics.ModelFilter("f1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.ModelFilter("f2"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.UpdateFilter("f1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());
        foreach (var topic in new[] { MqttTopics.ModelChunk("f2", 0, 0), MqttTopics.Update("f1", "dev-2"), MqttTopics.ModelChunk("f1", 0, 0) })
            await watcher.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload([1]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        // f1's chunk, published last by the same client, is the signal: Mosquitto keeps one publisher's order, so the
        // others, had they been delivered, would have come first.
        await Eventually.HoldsAsync(() => { lock (delivered) return Task.FromResult(delivered.Contains(MqttTopics.ModelChunk("f1", 0, 0))); }, "f1's model topic");
        lock (delivered) Assert.Equal([MqttTopics.ModelChunk("f1", 0, 0)], delivered);
        watcher.Dispose();
        device.Dispose();
    }

    [Fact]
    public async Task MosquittoDeliversClusterModelsAndOnlyTheDevicesOwnAssignment_AndDevicesCannotWriteThem()
    {
        var (cloud, _) = await _cloud.ConnectAsync("cloud-publisher", Operator, OperatorPassword);
        var (device, _) = await _cloud.ConnectAsync("dev-1", "dev-1", _devices["dev-1"].Password);
        var delivered = new List<(string Topic, byte Payload)>();
        device.ApplicationMessageReceivedAsync += e => { lock (delivered) delivered.Add((e.ApplicationMessage.Topic, e.ApplicationMessage.Payload.FirstSpan[0])); return Task.CompletedTask; };
        await device.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(MqttTopics.AllClusterModelsFilter("f1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.ClusterAssignment("f1", "dev-1"), MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("fededge/f1/assignment/+", MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(MqttTopics.AllClusterModelsFilter("f2"), MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());

        // The device tries to forge its own assignment and a cluster model: Mosquitto drops both.
        foreach (var topic in new[] { MqttTopics.ClusterAssignment("f1", "dev-1"), MqttTopics.ClusterModel("f1", 2) })
            await device.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload([66]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        foreach (var topic in new[] { MqttTopics.ClusterAssignment("f1", "dev-2"), MqttTopics.ClusterModel("f2", 1), MqttTopics.ClusterModelChunk("f1", 2, 0, 0), MqttTopics.ClusterAssignment("f1", "dev-1") })
            await cloud.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload([1]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        // dev-1's assignment, the cloud's last publish, is the signal (one publisher's order is kept; the device's own
        // publishes were acknowledged before the cloud's began).
        await Eventually.HoldsAsync(() => { lock (delivered) return Task.FromResult(delivered.Contains((MqttTopics.ClusterAssignment("f1", "dev-1"), (byte)1))); }, "dev-1's own assignment");
        lock (delivered)
            Assert.Equal([(MqttTopics.ClusterAssignment("f1", "dev-1"), (byte)1), (MqttTopics.ClusterModelChunk("f1", 2, 0, 0), (byte)1)], delivered.Distinct().Order());
        cloud.Dispose();
        device.Dispose();
    }

    [Fact]
    public async Task UpdatesFlowThroughMosquitto_AndDevicesReceiveTheSignedModel()
    {
        var federation = _cloud.Grains.GetGrain<IFederationGrain>("f1");
        var config = new FederationConfig { Model = "logreg", Codec = "fp32", Rule = "mean", Rounds = 1, RoundDeadline = TimeSpan.FromMinutes(5) };
        var status = await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()));
        Assert.Equal(["dev-1", "dev-2"], status.Sampled.Order()); // dev-r is revoked
        var d = status.ParameterCount;
        await using var dev1 = await TestDevice.ConnectAsync(_cloud, "dev-1", "f1", _devices["dev-1"].Password, _devices["dev-1"].Key);
        await using var dev2 = await TestDevice.ConnectAsync(_cloud, "dev-2", "f1", _devices["dev-2"].Password, _devices["dev-2"].Key);
        var models = new ModelWatcher(dev1.Client, "f1", _cloud.Services.GetRequiredService<CloudSigningKey>().PublicKey);
        await models.SubscribeAsync();

        await dev1.PublishEnvelopeAsync(dev1.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0));
        await dev2.PublishEnvelopeAsync(dev2.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).Phase == FederationPhase.Finished, "the one round to finish");
        await Eventually.HoldsAsync(() => Task.FromResult(models.LatestVersion == 1), "the device to assemble model v1");
        var expected = await federation.GetModelAsync();
        Assert.Equal(expected!.Sha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(models.LatestModel!)));
        var metrics = _cloud.Services.GetRequiredService<IngestionMetrics>();
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted == 2), "both updates counted as accepted");
    }

    [Fact]
    public async Task ACloudStoppedMidUpdateCompletesItFromItsChunkSpoolWhenTheBrokerRedeliversTheRest()
    {
        var federation = _cloud.Grains.GetGrain<IFederationGrain>("f1");
        // d = 402: the fp32 update takes 8 chunks in frames of 300 bytes.
        var model = FedEdge.Training.Zoo.ModelZoo.Create("logreg", [200], classes: 2, seed: 1).ToByteArray();
        var d = (await federation.StartAsync(TestModels.OpenRounds,
            new Immutable<byte[]>(model))).ParameterCount;
        await using var device = await TestDevice.ConnectAsync(_cloud, "dev-1", "f1", _devices["dev-1"].Password, _devices["dev-1"].Key);
        var signed = device.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0);
        var updateId = FedEdge.Protocol.Messages.UpdateEnvelope.Parser.ParseFrom(signed).UpdateId;
        var frames = UpdateFramer.Frame(signed, updateId.Span, maxFrameBytes: 300);
        Assert.True(frames.Count >= 3, $"{frames.Count} chunks");
        var topic = MqttTopics.Update("f1", "dev-1");
        var spool = new ChunkSpool(new CloudDataDirectory(_data.Path).ChunkSpool, flushToDisk: false, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        var id = Convert.ToHexString(updateId.Span);

        // Mosquitto acknowledges every chunk to the device; the cloud holds all but the last, each spooled before the cloud
        // acknowledged it to Mosquitto. Then the cloud stops (its memory is gone) and the last chunk arrives meanwhile.
        foreach (var frame in frames.SkipLast(1)) await TestDevice.PublishFrameAsync(device.Client, topic, frame);
        await Eventually.HoldsAsync(() => Task.FromResult(spool.Read("dev-1", id).Count == frames.Count - 1), "the held chunks spooled");
        await _cloud.DisposeAsync();
        await TestDevice.PublishFrameAsync(device.Client, topic, frames[^1]);

        // Restarted, the cloud reads the spool back; Mosquitto redelivers the last chunk from the cloud's session; the
        // update is stored once, and its spooled chunks are gone. Before the spool, the restarted cloud had only the last one.
        _cloud = await CloudTestHost.StartAsync(_data.Path, o => o.Broker = _broker.Address);
        federation = _cloud.Grains.GetGrain<IFederationGrain>("f1");
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 1, "the update completed after the restart", TimeSpan.FromSeconds(30));
        // Deleted once the bridge settles the update, just after the federation stored it.
        await Eventually.HoldsAsync(() => Task.FromResult(spool.Read("dev-1", id).Count == 0), "the spooled chunks deleted");
        Assert.Equal(1, _cloud.Services.GetRequiredService<IngestionMetrics>().Accepted);
    }

    [Fact]
    public async Task AnUpdateTheCloudCouldNotStoreStaysUnacknowledgedAtMosquitto_AndIsRedeliveredAndStoredOnceAfterARestart()
    {
        // Mosquitto acknowledges the device's publish itself; the cloud acknowledges it to Mosquitto only once stored.
        // With storage failing, the cloud leaves it unacknowledged, so Mosquitto keeps it in the cloud's session.
        await _cloud.DisposeAsync();
        var log = new FaultyUpdateLog { Failing = true };
        _cloud = await CloudTestHost.StartAsync(_data.Path, o => o.Broker = _broker.Address, afterCloud: log.WrapIn);
        var federation = _cloud.Grains.GetGrain<IFederationGrain>("f1");
        var d = (await federation.StartAsync(TestModels.OpenRounds,
            new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        await using (var device = await TestDevice.ConnectAsync(_cloud, "dev-1", "f1", _devices["dev-1"].Password, _devices["dev-1"].Key))
        {
            await device.PublishEnvelopeAsync(device.SignedUpdate(Enumerable.Repeat(2f, d).ToArray(), 0));
            await Eventually.HoldsAsync(() => Task.FromResult(log.Refused >= 1), "the cloud's failed attempt to store the update");
        }
        Assert.Equal(0, (await federation.GetStatusAsync()).PendingUpdates);

        // Storage back; the cloud restarts and reconnects its persistent session; Mosquitto redelivers the update.
        await _cloud.DisposeAsync();
        _cloud = await CloudTestHost.StartAsync(_data.Path, o => o.Broker = _broker.Address);
        federation = _cloud.Grains.GetGrain<IFederationGrain>("f1");
        var metrics = _cloud.Services.GetRequiredService<IngestionMetrics>();
        await Eventually.HoldsAsync(async () => metrics.Accepted == 1 && (await federation.GetStatusAsync()).PendingUpdates == 1, "the redelivered update stored", TimeSpan.FromSeconds(30));
        Assert.Equal(1, (await _cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Accepted);
    }

    [Fact]
    public async Task BrokerRestarted_TheCloudResubscribes_AndUpdatesHeldWhileItWasDownArriveOnce()
    {
        var federation = _cloud.Grains.GetGrain<IFederationGrain>("f1");
        var status = await federation.StartAsync(TestModels.OpenRounds,
            new Immutable<byte[]>(TestModels.Logreg()));
        var d = status.ParameterCount;
        var metrics = _cloud.Services.GetRequiredService<IngestionMetrics>();
        byte[] sent1;
        await using (var dev1 = await TestDevice.ConnectAsync(_cloud, "dev-1", "f1", _devices["dev-1"].Password, _devices["dev-1"].Key))
        {
            sent1 = dev1.SignedUpdate(Enumerable.Repeat(1f, d).ToArray(), 0);
            await dev1.PublishEnvelopeAsync(sent1);
            await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted == 1), "dev-1's update");
        }

        // The broker dies (no persistence: every session and subscription is gone); dev-2 trains meanwhile.
        _broker.Kill();
        using var dev2Key = SigningKeyPair.FromPrivateKey("dev-2", _devices["dev-2"].Key);
        var heldWhileDown = TestDevice.SignedFp32(dev2Key, "f1", "dev-2", d, 3f);
        await _broker.RestartAsync();

        // Devices reconnect and drain their outboxes: dev-1 resends what it could not confirm, dev-2 what it held.
        await using var again1 = await TestDevice.ConnectAsync(_cloud, "dev-1", "f1", _devices["dev-1"].Password, _devices["dev-1"].Key);
        await using var again2 = await TestDevice.ConnectAsync(_cloud, "dev-2", "f1", _devices["dev-2"].Password, _devices["dev-2"].Key);
        await Eventually.HoldsAsync(async () =>
        {
            // Until the cloud has resubscribed, a QoS 1 publish to a topic nobody subscribes to is simply dropped.
            await again1.PublishEnvelopeAsync(sent1);
            await Task.Delay(200);
            return metrics.Rejected(RejectionReason.Replay) >= 1;
        }, "the cloud to resubscribe after the broker restart", TimeSpan.FromSeconds(30));
        await again2.PublishEnvelopeAsync(heldWhileDown);
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == 1, "the round to complete");
        status = await federation.GetStatusAsync();
        Assert.Equal(2, status.AcceptedTotal);
        Assert.Equal(2, Assert.Single(status.History).Updates);
        Assert.Equal(1, (await _cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Accepted);
    }
}
