using System.Globalization;
using System.Threading.Channels;
using FedEdge.Edge.Mqtt;
using FedEdge.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge.Models;

/// <summary>
/// Turns the federation's retained model messages into verified models. The announcement is verified first
/// (cloud signature, federation, sizes); only then does the receiver subscribe to that version's chunks, so
/// a device downloads only the model it will use. The assembled bytes must match the signed SHA-256. Older
/// or already-known versions are ignored (no rollback by replaying an old announcement). Every rejection is
/// logged with its reason; a rejected model is never handed on. One receiver per model stream: the federation's own
/// model (cluster 0, <see cref="MqttTopics.Model"/>) or one cluster model of a clustered federation (FedDAA,
/// <see cref="MqttTopics.ClusterModel"/>); an announcement whose signed <c>cluster</c> differs from its topic's is rejected.
/// </summary>
public sealed partial class ModelReceiver
{
    private readonly string _federation;
    private readonly int _cluster;
    private readonly ModelAnnouncementVerifier _verifier;
    private readonly MqttLink _link;
    private readonly ILogger _logger;
    private readonly Channel<VerifiedModel> _verified = Channel.CreateBounded<VerifiedModel>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropOldest,
        SingleReader = true,
    });
    private readonly string _announcementTopic;
    private ModelAssembler? _assembling;
    private byte[]? _assemblingAnnouncement;
    private readonly EdgeAgentStatistics? _statistics;
    private long _rejected;

    /// <param name="currentVersion">Version already held (from the <see cref="ModelStore"/>); -1 for none.</param>
    /// <param name="cluster">The model stream: 0 = the federation's model, c &gt; 0 = cluster model c.</param>
    public ModelReceiver(string federation, ModelAnnouncementVerifier verifier, MqttLink link, long currentVersion = -1, ILogger<ModelReceiver>? logger = null, EdgeAgentStatistics? statistics = null, int cluster = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cluster);
        _statistics = statistics;
        _federation = federation;
        _cluster = cluster;
        _verifier = verifier;
        _link = link;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _announcementTopic = cluster == 0 ? MqttTopics.Model(federation) : MqttTopics.ClusterModel(federation, cluster);
        CurrentVersion = currentVersion;
    }

    /// <summary>The model stream this receiver follows (0 = the federation's model).</summary>
    public int Cluster => _cluster;

    /// <summary>Topic of the retained announcement this receiver follows.</summary>
    public string AnnouncementTopic => _announcementTopic;

    /// <summary>Whether <paramref name="topic"/> is this stream's announcement or one of its chunks.</summary>
    public bool Handles(string topic) =>
        topic == _announcementTopic || (topic.Length > _announcementTopic.Length + 1 && topic.StartsWith(_announcementTopic, StringComparison.Ordinal) && topic[_announcementTopic.Length] == '/');

    /// <summary>Drops the chunk subscription of a download in progress (the stream is no longer followed).</summary>
    public async Task AbandonAsync(CancellationToken cancellationToken)
    {
        if (_assembling is { } assembler)
        {
            _assembling = null;
            await _link.UnsubscribeAsync(ChunkFilterOf(assembler.Announcement.ModelVersion), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Newest verified version (-1 before the first).</summary>
    public long CurrentVersion { get; private set; }

    /// <summary>Messages rejected so far (announcements and chunks).</summary>
    public long RejectedCount => Interlocked.Read(ref _rejected);

    /// <summary>Verified models, newest only: a version superseded before it was read is dropped.</summary>
    public ChannelReader<VerifiedModel> Verified => _verified.Reader;

    /// <summary>The filter of a version's chunk topics, <c>fededge/{federation}/model/{version}/+</c>.</summary>
    public static string ChunkFilter(string federation, long version) =>
        $"{MqttTopics.Model(federation)}/{version.ToString(CultureInfo.InvariantCulture)}/+";

    private string ChunkFilterOf(long version) => $"{_announcementTopic}/{version.ToString(CultureInfo.InvariantCulture)}/+";

    /// <summary>Reads the link's inbound messages until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var message in _link.Inbound.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                await HandleAsync(message, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Processes one inbound message (public for tests and for hosts that feed messages themselves).</summary>
    public async Task HandleAsync(MqttInboundMessage message, CancellationToken cancellationToken)
    {
        if (message.Topic == _announcementTopic)
        {
            await OnAnnouncementAsync(message.Payload, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (_assembling is { } assembler && message.Topic.StartsWith(_announcementTopic + "/", StringComparison.Ordinal))
        {
            var version = ParseChunkVersion(message.Topic);
            if (version != assembler.Announcement.ModelVersion)
                return; // chunks of another version (a stale retained message or session leftovers)
            await OnChunkAsync(assembler, message, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task OnAnnouncementAsync(ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var started = ModelAssembler.Start(payload.Span, _verifier);
        if (!started.IsAccepted)
        {
            CountRejected();
            LogAnnouncementRejected(started.Reason.ToString(), started.Message ?? "");
            return;
        }
        var assembler = started.Value;
        if (assembler.Announcement.Cluster != _cluster)
        {
            // A validly signed announcement replayed onto another stream's topic must not replace that stream's model.
            CountRejected();
            LogAnnouncementRejected(nameof(RejectReason.Inconsistent), $"announcement for cluster {assembler.Announcement.Cluster} on the topic of cluster {_cluster}");
            return;
        }
        var version = assembler.Announcement.ModelVersion;
        if (version <= CurrentVersion || version == _assembling?.Announcement.ModelVersion)
            return;
        if (_assembling is { } previous)
            await _link.UnsubscribeAsync(ChunkFilterOf(previous.Announcement.ModelVersion), cancellationToken).ConfigureAwait(false);
        _assembling = assembler;
        _assemblingAnnouncement = payload.ToArray();
        LogDownloading(version, assembler.Announcement.TotalSize, assembler.Announcement.ChunkCount);
        await _link.SubscribeAsync(ChunkFilterOf(version), cancellationToken).ConfigureAwait(false);
    }

    private async Task OnChunkAsync(ModelAssembler assembler, MqttInboundMessage message, CancellationToken cancellationToken)
    {
        var (outcome, reason, detail) = assembler.AddChunk(message.Payload.Span);
        if (outcome == ChunkOutcome.Rejected)
        {
            CountRejected();
            LogChunkRejected(message.Topic, reason.ToString(), detail ?? "");
            return;
        }
        if (outcome != ChunkOutcome.Stored || !assembler.IsComplete)
            return;
        var version = assembler.Announcement.ModelVersion;
        var filter = ChunkFilterOf(version);
        var completed = assembler.TryComplete();
        if (!completed.IsAccepted)
        {
            // The assembler forgot its chunks; subscribing again redelivers the retained ones.
            CountRejected();
            LogModelRejected(version, completed.Reason.ToString(), completed.Message ?? "");
            await _link.UnsubscribeAsync(filter, cancellationToken).ConfigureAwait(false);
            await _link.SubscribeAsync(filter, cancellationToken).ConfigureAwait(false);
            return;
        }
        _assembling = null;
        CurrentVersion = version;
        await _link.UnsubscribeAsync(filter, cancellationToken).ConfigureAwait(false);
        LogVerified(version, completed.Value.Length);
        _verified.Writer.TryWrite(new VerifiedModel(assembler.Announcement, _assemblingAnnouncement!, completed.Value));
    }

    private void CountRejected()
    {
        Interlocked.Increment(ref _rejected);
        _statistics?.ModelMessageRejected();
    }

    private long ParseChunkVersion(string topic)
    {
        var rest = topic.AsSpan(_announcementTopic.Length + 1);
        var slash = rest.IndexOf('/');
        return slash > 0 && long.TryParse(rest[..slash], NumberStyles.None, CultureInfo.InvariantCulture, out var version) ? version : -1;
    }

    [LoggerMessage(EventId = 310, Level = LogLevel.Warning, Message = "Model announcement rejected ({Reason}): {Detail}")]
    private partial void LogAnnouncementRejected(string reason, string detail);

    [LoggerMessage(EventId = 311, Level = LogLevel.Warning, Message = "Model chunk on {Topic} rejected ({Reason}): {Detail}")]
    private partial void LogChunkRejected(string topic, string reason, string detail);

    [LoggerMessage(EventId = 312, Level = LogLevel.Warning, Message = "Model v{Version} rejected ({Reason}): {Detail}")]
    private partial void LogModelRejected(long version, string reason, string detail);

    [LoggerMessage(EventId = 313, Level = LogLevel.Information, Message = "Downloading model v{Version}: {Bytes} bytes in {Chunks} chunks")]
    private partial void LogDownloading(long version, long bytes, int chunks);

    [LoggerMessage(EventId = 314, Level = LogLevel.Information, Message = "Model v{Version} verified ({Bytes} bytes, cloud signature and SHA-256)")]
    private partial void LogVerified(long version, int bytes);
}
