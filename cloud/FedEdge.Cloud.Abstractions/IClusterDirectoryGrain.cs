namespace FedEdge.Cloud.Abstractions;

/// <summary>
/// The cluster directory of one clustered (FedDAA) federation (key: federation id). It keeps each device's latest drift
/// statistics, decides the clustering (k by silhouette with hysteresis, FedDAA arXiv 2506.21054), creates cluster
/// model grains (<see cref="IFederationGrain"/> keyed by <see cref="ModelGrainKey.For"/>) from a parent model, retires
/// clusters that lost all their devices, and publishes each device's signed, retained <c>ClusterAssignment</c>.
/// The math is FedEdge.Drift's; the models and their rounds are the model grains'.
/// </summary>
public interface IClusterDirectoryGrain : IGrainWithStringKey
{
    /// <summary>
    /// Records a device's drift statistics (from a verified update). Returns null when taken (or when an older window
    /// than the one held is ignored), else why they were refused (the prototype shape differs from the fleet's).
    /// </summary>
    Task<string?> ReportStatisticsAsync(string deviceId, DeviceDriftStatistics statistics);

    /// <summary>
    /// The clock of the clustering: the reference model (cluster 0) reached <paramref name="version"/>. After the
    /// warm-up, every <c>ReclusterEvery</c> versions the fleet is re-clustered.
    /// </summary>
    Task OnReferenceVersionAsync(long version);

    /// <summary>Re-clusters now (operator request), whatever the reference version; returns the result.</summary>
    Task<ClusteringStatus> ReclusterAsync();

    /// <summary>Device liveness (forwarded by the federation grain): online devices are live in their clusters' rounds.</summary>
    Task SetDeviceOnlineAsync(string deviceId, bool online);

    /// <summary>After a restart: re-activates the live cluster models (they republish) and republishes every assignment.</summary>
    Task ResumeAsync();

    Task<ClusteringStatus> GetStatusAsync();

    /// <summary>Whether cluster model <paramref name="cluster"/> exists and is not retired (checked before an update is routed to it).</summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<bool> IsLiveClusterAsync(int cluster);
}

/// <summary>A device's drift statistics for one window, as the cloud keeps them (the <c>DriftStatistics</c> message, checked).</summary>
[GenerateSerializer, Immutable]
public sealed record DeviceDriftStatistics
{
    [Id(0)] public long WindowIndex { get; init; }
    [Id(1)] public long SampleCount { get; init; }
    /// <summary>R (labels).</summary>
    [Id(2)] public int LabelCount { get; init; }
    /// <summary>D (model outputs).</summary>
    [Id(3)] public int OutputDimension { get; init; }
    /// <summary>R × D prototype of the current window with the reference model.</summary>
    [Id(4)] public float[] Prototype { get; init; } = [];
    /// <summary>R label counts of the current window.</summary>
    [Id(5)] public float[] LabelHistogram { get; init; } = [];
    /// <summary>FedRC cluster × label weights Σ_i w_ic·1[y_i = r], rows in the order of <see cref="Clusters"/>.</summary>
    [Id(6)] public float[] ClusterLabelWeights { get; init; } = [];
    [Id(7)] public int[] Clusters { get; init; } = [];
    [Id(8)] public long AssignmentEpoch { get; init; }
    [Id(9)] public DateTimeOffset ReceivedAt { get; init; }
}

/// <summary>The directory's view: the current clustering, its clusters and each device's assignment.</summary>
[GenerateSerializer, Immutable]
public sealed record ClusteringStatus
{
    [Id(0)] public string Federation { get; init; } = "";
    /// <summary>Clustering epoch (0 = not clustered yet); increases with every decision.</summary>
    [Id(1)] public long Epoch { get; init; }
    /// <summary>The kept number of clusters k (0 before the first decision).</summary>
    [Id(2)] public int K { get; init; }
    /// <summary>Reference-model version at the last decision.</summary>
    [Id(3)] public long DecidedAtVersion { get; init; }
    [Id(4)] public IReadOnlyList<ClusterSummary> Clusters { get; init; } = [];
    /// <summary>Primary cluster of each assigned device.</summary>
    [Id(5)] public IReadOnlyDictionary<string, int> Assignments { get; init; } = new Dictionary<string, int>();
    /// <summary>Mean silhouette of every k tried at the last decision.</summary>
    [Id(6)] public IReadOnlyDictionary<int, double> Silhouettes { get; init; } = new Dictionary<int, double>();
    /// <summary>Devices whose statistics the directory holds.</summary>
    [Id(7)] public int DevicesWithStatistics { get; init; }
    /// <summary>Why the last attempt made no decision (too few devices), or null.</summary>
    [Id(8)] public string? LastSkipped { get; init; }
}

[GenerateSerializer, Immutable]
public sealed record ClusterSummary
{
    /// <summary>Cluster number (≥ 1; 0 is the federation's own reference model).</summary>
    [Id(0)] public int Cluster { get; init; }
    /// <summary>Model the cluster started from (0 = the reference model).</summary>
    [Id(1)] public int Parent { get; init; }
    [Id(2)] public long CreatedEpoch { get; init; }
    /// <summary>Epoch at which it lost all its devices and was retired, or null while live.</summary>
    [Id(3)] public long? RetiredEpoch { get; init; }
    /// <summary>Devices whose primary cluster it is.</summary>
    [Id(4)] public int Devices { get; init; }
    /// <summary>P_c(y), R values (FedRC, from the devices' cluster × label weight histograms).</summary>
    [Id(5)] public IReadOnlyList<float> LabelDistribution { get; init; } = [];

    public bool IsLive => RetiredEpoch is null;
}
