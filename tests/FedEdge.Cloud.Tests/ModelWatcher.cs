using System.Buffers;
using FedEdge.Protocol;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Tests;

/// <summary>What a device does with the model topics: verify the announcement with the cloud key, assemble the chunks.</summary>
public sealed class ModelWatcher(IMqttClient client, string federation, byte[] cloudPublicKey)
{
    private readonly ModelAnnouncementVerifier _verifier = new(federation, new VerificationKeyRing(new VerificationKey("cloud", cloudPublicKey)));
    private readonly Dictionary<long, List<byte[]>> _chunks = [];
    private readonly object _lock = new();
    private ModelAssembler? _assembler;

    public long LatestVersion { get; private set; } = -1;
    public byte[]? LatestModel { get; private set; }
    public int RejectedAnnouncements { get; private set; }

    public async Task SubscribeAsync()
    {
        client.ApplicationMessageReceivedAsync += e =>
        {
            var payload = e.ApplicationMessage.Payload.ToArray();
            if (payload.Length > 0) lock (_lock) Take(e.ApplicationMessage.Topic, payload);
            return Task.CompletedTask;
        };
        var result = await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(MqttTopics.ModelFilter(federation), MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, result.Items.Single().ResultCode);
    }

    private void Take(string topic, byte[] payload)
    {
        if (topic == MqttTopics.Model(federation))
        {
            var started = ModelAssembler.Start(payload, _verifier);
            if (!started.IsAccepted) { RejectedAnnouncements++; return; }
            _assembler = started.Value;
            foreach (var chunk in _chunks.GetValueOrDefault(_assembler.Announcement.ModelVersion) ?? []) _assembler.AddChunk(chunk);
        }
        else
        {
            var version = long.Parse(topic.Split('/')[^2], System.Globalization.CultureInfo.InvariantCulture);
            if (!_chunks.TryGetValue(version, out var list)) _chunks[version] = list = [];
            list.Add(payload);
            if (_assembler?.Announcement.ModelVersion == version) _assembler.AddChunk(payload);
        }
        if (_assembler is { IsComplete: true } assembler && assembler.TryComplete() is { IsAccepted: true } model)
        {
            LatestVersion = assembler.Announcement.ModelVersion;
            LatestModel = model.Value;
        }
    }
}
