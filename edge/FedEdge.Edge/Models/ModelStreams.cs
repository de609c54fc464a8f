using System.Collections.Concurrent;
using System.Globalization;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Training;
using FedEdge.Protocol;
using Microsoft.Extensions.Logging;

namespace FedEdge.Edge.Models;

/// <summary>
/// One model stream the agent follows: the federation's model (cluster 0) or a cluster model (FedDAA), with its
/// receiver, its on-disk store, the latest verified version and its own error-feedback memory (a cluster's residual
/// must only ever be added to that cluster's updates).
/// </summary>
internal sealed class ModelStream(int cluster, ModelReceiver receiver, ModelStore store, ErrorFeedbackStore errorFeedbackStore, VerifiedModel? latest)
{
    public int Cluster { get; } = cluster;
    public ModelReceiver Receiver { get; } = receiver;
    public ModelStore Store { get; } = store;
    public ErrorFeedbackStore ErrorFeedbackStore { get; } = errorFeedbackStore;

    /// <summary>Latest verified model (set by the agent loop only).</summary>
    public VerifiedModel? Latest { get; set; } = latest;

    public ErrorFeedbackCompressor? ErrorFeedback { get; set; }
}

/// <summary>
/// The agent's model streams by cluster. Cluster 0 keeps the single-model layout of the state directory
/// (<c>model/</c>, <c>error-feedback.bin</c>), so an unclustered device's state is unchanged; cluster c &gt; 0 uses
/// <c>model-cluster-c/</c> and <c>error-feedback-cluster-c.bin</c>.
/// </summary>
internal sealed class ModelStreams(string stateDirectory, string federation, ModelAnnouncementVerifier verifier, MqttLink link, bool fsync,
    ILoggerFactory loggers, EdgeAgentStatistics statistics)
{
    private readonly ConcurrentDictionary<int, ModelStream> _streams = new();

    public IEnumerable<ModelStream> All => _streams.Values;

    public ModelStream? Find(int cluster) => _streams.GetValueOrDefault(cluster);

    /// <summary>Opens (or returns) the stream of <paramref name="cluster"/>, with its stored model if that still verifies.</summary>
    public ModelStream Open(int cluster)
    {
        if (_streams.TryGetValue(cluster, out var open))
            return open;
        var suffix = cluster == 0 ? "" : "-cluster-" + cluster.ToString(CultureInfo.InvariantCulture);
        var store = new ModelStore(Path.Combine(stateDirectory, EdgeAgent.ModelDirectoryName + suffix), verifier, fsync, loggers.CreateLogger<ModelStore>(), cluster);
        var stored = store.TryLoad();
        var receiver = new ModelReceiver(federation, verifier, link, stored?.Version ?? -1, loggers.CreateLogger<ModelReceiver>(), statistics, cluster);
        var errorFeedbackPath = cluster == 0
            ? Path.Combine(stateDirectory, EdgeAgent.ErrorFeedbackFileName)
            : Path.Combine(stateDirectory, $"error-feedback{suffix}.bin");
        var stream = new ModelStream(cluster, receiver, store, new ErrorFeedbackStore(errorFeedbackPath, fsync, loggers.CreateLogger<ErrorFeedbackStore>()), stored);
        return _streams.GetOrAdd(cluster, stream);
    }

    public void Close(int cluster) => _streams.TryRemove(cluster, out _);
}
