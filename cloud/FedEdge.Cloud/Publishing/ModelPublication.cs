using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Publishing;

/// <summary>
/// Publishes a federation's global model (cluster 0) or one of its FedDAA cluster models (cluster c &gt; 0): chunks,
/// then the announcement (version, SHA-256, cluster, a cluster model's P_c(y), cloud signature), all retained at QoS 1 on the model's topics
/// (<see cref="PublishedModel.AnnouncementTopic"/>); then clears the previous version's retained chunks so the broker
/// does not keep every version forever.
/// </summary>
public sealed class ModelPublication : IDisposable
{
    private readonly MqttServiceConnection _mqtt;
    private readonly CloudOptions _options;
    private readonly ILogger<ModelPublication> _logger;
    private readonly SigningKeyPair _key;
    private readonly ModelPublisher _publisher;

    public ModelPublication(MqttServiceConnection mqtt, CloudSigningKey key, IOptions<CloudOptions> options, ILogger<ModelPublication> logger)
    {
        _mqtt = mqtt;
        _options = options.Value;
        _logger = logger;
        _key = key.ToSigningKeyPair();
        _publisher = new ModelPublisher(_key);
    }

    public Task PublishAsync(string federation, long version, ReadOnlyMemory<byte> model, int parameterCount, string codecHint,
        int? previousChunkCount, CancellationToken cancellationToken) =>
        PublishAsync(federation, cluster: 0, version, model, parameterCount, codecHint, previousChunkCount, cancellationToken);

    /// <param name="labelDistribution">Cluster models: P_c(y) of this version, signed with the announcement (null or empty: unknown).</param>
    /// <param name="algorithm">What devices compute (null: FedAvg, nothing announced), with FedMM's statistics count and FAR-SIGN's work seed.</param>
    public async Task PublishAsync(string federation, int cluster, long version, ReadOnlyMemory<byte> model, int parameterCount, string codecHint,
        int? previousChunkCount, CancellationToken cancellationToken, IReadOnlyList<float>? labelDistribution = null, AnnouncedAlgorithm? algorithm = null)
    {
        var published = _publisher.Publish(federation, version, model.Span, new ModelPublishOptions
        {
            ChunkSize = _options.ModelChunkBytes,
            ParameterCount = parameterCount,
            CodecHints = [codecHint],
            Cluster = cluster,
            LabelDistribution = labelDistribution ?? [],
            Algorithm = algorithm?.Spec is null or AlgorithmSpec.FedAvg ? "" : algorithm.Spec,
            StatisticsCount = algorithm?.StatisticsCount ?? 0,
            WorkSeed = algorithm?.WorkSeed ?? 0,
        });
        foreach (var (topic, payload) in published.Messages())
            await _mqtt.PublishAsync(Retained(topic, payload), cancellationToken);
        if (previousChunkCount is int count && version > 0)
            await ClearChunksAsync(federation, cluster, version - 1, count, cancellationToken);
        _logger.LogInformation("Published model v{Version} of {Federation} cluster {Cluster}: {Bytes} bytes in {Chunks} chunk(s), d = {Dimension}",
            version, federation, cluster, model.Length, published.Chunks.Count, parameterCount);
    }

    /// <summary>Deletes a model's retained announcement and the chunks of its current version (a retired cluster model).</summary>
    public async Task WithdrawAsync(string federation, int cluster, long version, int chunkCount, CancellationToken cancellationToken)
    {
        await _mqtt.PublishAsync(Retained(PublishedModel.AnnouncementTopic(federation, cluster), []), cancellationToken);
        await ClearChunksAsync(federation, cluster, version, chunkCount, cancellationToken);
        _logger.LogInformation("Withdrew model v{Version} of {Federation} cluster {Cluster}", version, federation, cluster);
    }

    private async Task ClearChunksAsync(string federation, int cluster, long version, int count, CancellationToken cancellationToken)
    {
        for (var i = 0; i < count; i++)
            await _mqtt.PublishAsync(Retained(PublishedModel.ChunkTopic(federation, cluster, version, i), []), cancellationToken);
    }

    /// <summary>Chunks a model of this size is cut into (to clear them later).</summary>
    public int ChunkCount(long modelBytes) => (int)((modelBytes + _options.ModelChunkBytes - 1) / _options.ModelChunkBytes);

    public void Dispose() => _key.Dispose();

    // An empty retained payload deletes the retained message (MQTT 3.3.1.3).
    private static MqttApplicationMessage Retained(string topic, byte[] payload) => new MqttApplicationMessageBuilder()
        .WithTopic(topic)
        .WithPayload(payload)
        .WithRetainFlag()
        .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
        .Build();
}

/// <summary>What a model announcement tells devices to compute (see <c>ModelAnnouncement.algorithm</c>).</summary>
/// <param name="Spec">The canonical algorithm spec ("fedavg" is not announced: devices default to it).</param>
/// <param name="StatisticsCount">FedMM: floats of Ŝ appended to the model bytes.</param>
/// <param name="WorkSeed">FAR-SIGN: the version's work seed.</param>
public sealed record AnnouncedAlgorithm(string Spec, long StatisticsCount, ulong WorkSeed);
