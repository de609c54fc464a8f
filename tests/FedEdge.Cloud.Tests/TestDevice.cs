using FedEdge.Compression;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using FedEdge.Training;
using Google.Protobuf;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Tests;

/// <summary>A registered device as a test drives it: its MQTT connection and its signing key.</summary>
public sealed class TestDevice : IAsyncDisposable
{
    private TestDevice(string id, string federation, SigningKeyPair key, IMqttClient client)
    {
        Id = id;
        Federation = federation;
        Key = key;
        Client = client;
    }

    public string Id { get; }
    public string Federation { get; }
    public SigningKeyPair Key { get; }
    public IMqttClient Client { get; }

    public static async Task<TestDevice> RegisterAndConnectAsync(CloudTestHost cloud, string id, string federation)
    {
        var (_, password, privateKey) = cloud.Registry.Add(id, federation);
        return await ConnectAsync(cloud, id, federation, password, privateKey);
    }

    public static async Task<TestDevice> ConnectAsync(CloudTestHost cloud, string id, string federation, string password, byte[] privateKey)
    {
        var (client, result) = await cloud.ConnectAsync(id, id, password);
        Assert.Equal(MqttClientConnectResultCode.Success, result?.ResultCode);
        return new TestDevice(id, federation, SigningKeyPair.FromPrivateKey(id, privateKey), client);
    }

    /// <summary>Connects to a broker on a loopback port (for a cloud running in another process).</summary>
    public static async Task<TestDevice> ConnectAsync(int brokerPort, string id, string federation, string password, byte[] privateKey)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var result = await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", brokerPort).WithClientId(id)
            .WithCredentials(id, password).WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).WithTimeout(TimeSpan.FromSeconds(5)).Build());
        Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
        return new TestDevice(id, federation, SigningKeyPair.FromPrivateKey(id, privateKey), client);
    }

    /// <summary>Signed envelope bytes of an fp32 update (optionally signed with another key or claiming another device).</summary>
    public byte[] SignedUpdate(float[] delta, long baseVersion, long samples = 10, SigningKeyPair? signer = null, ByteString? updateId = null, string? claimedDevice = null, Action<byte[]>? tamperPayload = null, Action<UpdateEnvelope>? configure = null, IUpdateCodec? codec = null)
    {
        codec ??= Fp32Codec.Instance;
        var payload = codec.Encode(delta);
        tamperPayload?.Invoke(payload);
        var envelope = new UpdateEnvelope
        {
            Federation = Federation,
            DeviceId = claimedDevice ?? Id,
            BaseModelVersion = baseVersion,
            SampleCount = samples,
            Codec = codec.Spec,
            Dimension = delta.Length,
            Payload = ByteString.CopyFrom(payload),
            Metrics = new TrainingMetrics { Loss = 0.5 },
            UpdateId = updateId ?? UpdateEnvelopeSigner.NewUpdateId(),
        };
        configure?.Invoke(envelope);
        return new UpdateEnvelopeSigner(signer ?? Key).Sign(envelope);
    }

    /// <summary>An fp32 update of <paramref name="d"/> coordinates equal to <paramref name="value"/>, signed with
    /// <paramref name="key"/> by a device that is not connected as a <see cref="TestDevice"/> (or made while its link was down).</summary>
    public static byte[] SignedFp32(SigningKeyPair key, string federation, string deviceId, int d, float value = 0f) =>
        new UpdateEnvelopeSigner(key).Sign(new UpdateEnvelope
        {
            Federation = federation,
            DeviceId = deviceId,
            BaseModelVersion = 0,
            SampleCount = 10,
            Codec = Fp32Codec.Instance.Spec,
            Dimension = d,
            Payload = ByteString.CopyFrom(Fp32Codec.Instance.Encode(Enumerable.Repeat(value, d).ToArray())),
            UpdateId = UpdateEnvelopeSigner.NewUpdateId(),
        });

    public Task PublishEnvelopeAsync(byte[] signedEnvelope, IMqttClient? via = null, string? topicDevice = null) =>
        PublishFrameAsync(via ?? Client, MqttTopics.Update(Federation, topicDevice ?? Id), WholeFrame(signedEnvelope));

    public static byte[] WholeFrame(byte[] signedEnvelope) => new UpdateFrame { Envelope = UpdateEnvelope.Parser.ParseFrom(signedEnvelope) }.ToByteArray();

    public static async Task PublishFrameAsync(IMqttClient client, string topic, byte[] frame)
    {
        var result = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(frame)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.True(result.IsSuccess, $"publish to {topic}: {result.ReasonCode}");
    }

    public async Task AnnounceOnlineAsync() =>
        await Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Status(Federation, Id))
            .WithPayload(DeviceStatuses.Create(Federation, Id, DeviceState.Online).ToByteArray()).WithRetainFlag()
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (Client.IsConnected) await Client.DisconnectAsync();
        }
        catch (MQTTnet.Exceptions.MqttCommunicationException)
        {
            // The broker is gone (the fault tests kill it); there is nothing left to disconnect from.
        }
        Client.Dispose();
        Key.Dispose();
    }
}

/// <summary>A tiny model for tests: logistic regression on 4 features, 2 classes (d = 10).</summary>
public static class TestModels
{
    public static byte[] Logreg() => FedEdge.Training.Zoo.ModelZoo.Create("logreg", [4], classes: 2, seed: 1).ToByteArray();

    /// <summary>fp32 updates, the plain mean, synchronous rounds without end and a 5-minute deadline: a round stays open
    /// while a sampled device is silent, so the pending count shows what was stored.</summary>
    public static readonly FedEdge.Cloud.Abstractions.FederationConfig OpenRounds = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FedEdge.Cloud.Abstractions.FederationMode.Sync,
        RoundDeadline = TimeSpan.FromMinutes(5),
    };
}
