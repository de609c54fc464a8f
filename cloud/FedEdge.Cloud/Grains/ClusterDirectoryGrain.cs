using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Clustering;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Publishing;
using FedEdge.Cloud.Security;
using FedEdge.Protocol.Messages;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using ClusterAssignmentMessage = FedEdge.Protocol.Messages.ClusterAssignment;

namespace FedEdge.Cloud.Grains;

/// <summary>The cluster directory's persisted state (one per clustered federation).</summary>
[GenerateSerializer]
public sealed class ClusterDirectoryState
{
    /// <summary>Clustering epoch (0 = none yet); one more per decision.</summary>
    [Id(0)] public long Epoch { get; set; }
    /// <summary>The kept k (hysteresis is restored from it after a restart).</summary>
    [Id(1)] public int K { get; set; }
    [Id(2)] public long DecidedAtVersion { get; set; }
    /// <summary>R and D of the fleet's prototypes, fixed by the first statistics taken.</summary>
    [Id(3)] public int LabelCount { get; set; }
    [Id(4)] public int OutputDimension { get; set; }
    /// <summary>k × R × D centres of the current clustering, and the cluster id of each.</summary>
    [Id(5)] public float[] Centres { get; set; } = [];
    [Id(6)] public int[] CentreClusters { get; set; } = [];
    [Id(7)] public Dictionary<int, ClusterRecord> Clusters { get; set; } = [];
    /// <summary>Next cluster id; ids are never reused, so a retired cluster's grain state cannot be mistaken for a new one.</summary>
    [Id(8)] public int NextCluster { get; set; } = 1;
    [Id(9)] public Dictionary<string, DeviceDriftStatistics> Statistics { get; set; } = [];
    [Id(10)] public Dictionary<string, DeviceClusterAssignment> Assignments { get; set; } = [];
    [Id(11)] public HashSet<string> Offline { get; set; } = [];
    [Id(12)] public Dictionary<int, double> Silhouettes { get; set; } = [];
    [Id(13)] public string? LastSkipped { get; set; }
}

[GenerateSerializer]
public sealed class ClusterRecord
{
    [Id(0)] public int Cluster { get; set; }
    [Id(1)] public int Parent { get; set; }
    [Id(2)] public long CreatedEpoch { get; set; }
    [Id(3)] public long? RetiredEpoch { get; set; }
    [Id(4)] public float[] LabelDistribution { get; set; } = [];
}

/// <summary>
/// A clustered federation's directory (<see cref="IClusterDirectoryGrain"/>). Not reentrant: a decision (plan, create and
/// retire cluster models, publish assignments) runs as one unit against statistics that do not change under it.
/// The decision itself is <see cref="ClusteringPlanner.Plan"/>; this grain keeps the state and carries the plan out:
/// the state (clusters, assignments, epoch) is written before the cluster models are created, and
/// <see cref="ResumeAsync"/> completes a decision interrupted by a crash (starts the models still missing, republishes).
/// </summary>
public sealed class ClusterDirectoryGrain : Grain, IClusterDirectoryGrain
{
    private readonly IPersistentState<ClusterDirectoryState> _state;
    private readonly ClusterAssignmentPublication _publication;
    private readonly DeviceRegistry _registry;
    private readonly ILogger<ClusterDirectoryGrain> _logger;
    private readonly CoalescingWriter _writer;
    private FederationConfig? _config;

    public ClusterDirectoryGrain(
        [PersistentState("cluster-directory", CloudHostExtensions.StorageName)] IPersistentState<ClusterDirectoryState> state,
        ClusterAssignmentPublication publication,
        DeviceRegistry registry,
        ILogger<ClusterDirectoryGrain> logger)
    {
        _state = state;
        _publication = publication;
        _registry = registry;
        _logger = logger;
        _writer = new CoalescingWriter(() => _state.WriteStateAsync());
    }

    private string Federation => this.GetPrimaryKeyString();

    private ClusterDirectoryState S => _state.State;

    private IFederationGrain ModelGrain(int cluster) => GrainFactory.GetGrain<IFederationGrain>(ModelGrainKey.For(Federation, cluster));

    public Task<string?> ReportStatisticsAsync(string deviceId, DeviceDriftStatistics statistics)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        if (S.LabelCount != 0 && (statistics.LabelCount != S.LabelCount || statistics.OutputDimension != S.OutputDimension))
            return Task.FromResult<string?>($"prototype of {statistics.LabelCount} × {statistics.OutputDimension}; the federation's devices use {S.LabelCount} × {S.OutputDimension}");
        if (S.Statistics.TryGetValue(deviceId, out var held) && held.WindowIndex > statistics.WindowIndex) return Task.FromResult<string?>(null);
        S.LabelCount = statistics.LabelCount;
        S.OutputDimension = statistics.OutputDimension;
        S.Statistics[deviceId] = statistics;
        // Not awaited: the latest statistics are re-sent with every update, and a decision writes them durably.
        _ = WriteInBackgroundAsync();
        return Task.FromResult<string?>(null);
    }

    public async Task OnReferenceVersionAsync(long version)
    {
        var config = await ConfigAsync();
        if (config is null || version < config.WarmupVersions || (version - config.WarmupVersions) % config.ReclusterEvery != 0) return;
        if (S.Epoch > 0 && version <= S.DecidedAtVersion) return; // a repeated tick (e.g. after a restart)
        await DecideAsync(config, version);
    }

    public async Task<ClusteringStatus> ReclusterAsync()
    {
        var config = await ConfigAsync() ?? throw new InvalidOperationException($"Federation {Federation} is not a started clustered federation");
        var reference = await ModelGrain(0).GetStatusAsync();
        await DecideAsync(config, reference.ModelVersion);
        return Status();
    }

    public async Task SetDeviceOnlineAsync(string deviceId, bool online)
    {
        if (!(online ? S.Offline.Remove(deviceId) : S.Offline.Add(deviceId))) return;
        _ = WriteInBackgroundAsync();
        if (S.Assignments.TryGetValue(deviceId, out var assignment))
            await Task.WhenAll(assignment.Clusters.Where(IsLive).Select(c => ModelGrain(c).SetDeviceLiveAsync(deviceId, online)));
    }

    public async Task ResumeAsync()
    {
        var config = await ConfigAsync();
        if (config is null || S.Epoch == 0) return;
        foreach (var cluster in S.Clusters.Values.Where(c => c.RetiredEpoch is null).OrderBy(c => c.Cluster))
            await EnsureStartedAsync(config, cluster.Cluster, cluster.Parent);
        await PublishAssignmentsAsync();
        _logger.LogInformation("Cluster directory of {Federation} resumed at epoch {Epoch}: k = {K}, {Devices} assigned device(s)", Federation, S.Epoch, S.K, S.Assignments.Count);
    }

    public Task<ClusteringStatus> GetStatusAsync() => Task.FromResult(Status());

    public Task<bool> IsLiveClusterAsync(int cluster) => Task.FromResult(IsLive(cluster));

    private bool IsLive(int cluster) => S.Clusters.TryGetValue(cluster, out var c) && c.RetiredEpoch is null;

    private async Task DecideAsync(FederationConfig config, long version)
    {
        // Revoked devices, and devices removed or moved to another federation, no longer steer the clustering.
        var active = _registry.List(Federation).Where(d => !d.Revoked).Select(d => d.DeviceId).ToHashSet(StringComparer.Ordinal);
        foreach (var gone in S.Statistics.Keys.Where(d => !active.Contains(d)).ToList())
        {
            S.Statistics.Remove(gone);
            _logger.LogInformation("Federation {Federation}: statistics of {Device} dropped (not an active device of the federation)", Federation, gone);
        }
        var usable = S.Statistics.Count;
        if (usable < 3)
        {
            // ClusterCountSelector compares k = 2..MaxClusters, which needs at least three prototypes.
            S.LastSkipped = $"v{version}: {usable} device(s) with drift statistics; clustering needs at least 3";
            _logger.LogInformation("Federation {Federation}: {Skipped}", Federation, S.LastSkipped);
            await _writer.WriteAsync();
            return;
        }

        var epoch = S.Epoch + 1;
        var live = S.Clusters.Values.Where(c => c.RetiredEpoch is null).Select(c => c.Cluster).ToList();
        var plan = ClusteringPlanner.Plan(S.Statistics, S.Assignments, live, S.K, S.NextCluster, epoch, config);

        foreach (var id in plan.Created)
            S.Clusters[id] = new ClusterRecord { Cluster = id, Parent = plan.Parents[Array.IndexOf(plan.ClusterIds, id)], CreatedEpoch = epoch };
        foreach (var id in plan.Retired) S.Clusters[id].RetiredEpoch = epoch;
        foreach (var (id, distribution) in plan.LabelDistributions) S.Clusters[id].LabelDistribution = distribution;
        var previous = S.Assignments;
        S.Epoch = epoch;
        S.K = plan.K;
        S.DecidedAtVersion = version;
        S.NextCluster = plan.NextCluster;
        S.Centres = plan.Decision.Clustering.Centres;
        S.CentreClusters = plan.ClusterIds;
        S.Assignments = new Dictionary<string, DeviceClusterAssignment>(plan.Assignments, StringComparer.Ordinal);
        S.Silhouettes = new Dictionary<int, double>(plan.Decision.Silhouettes);
        S.LastSkipped = null;
        // Durable before any model grain changes: a crash from here on is completed by ResumeAsync.
        await _writer.WriteAsync();
        _logger.LogInformation("Federation {Federation}: epoch {Epoch} at reference v{Version}: k = {K} (best {Best}), clusters [{Clusters}], created [{Created}], retired [{Retired}]",
            Federation, epoch, version, plan.K, plan.Decision.BestK, string.Join(", ", plan.ClusterIds), string.Join(", ", plan.Created), string.Join(", ", plan.Retired));

        // Devices leave the rounds of clusters they are no longer assigned to, then join their new clusters'.
        foreach (var (device, old) in previous)
        {
            var now = S.Assignments.GetValueOrDefault(device);
            foreach (var c in old.Clusters.Where(c => IsLive(c) && (now is null || Array.IndexOf(now.Clusters, c) < 0)))
                await ModelGrain(c).SetDeviceLiveAsync(device, false);
            if (now is null) await WithdrawAssignmentAsync(device);
        }
        foreach (var id in plan.ClusterIds)
            await EnsureStartedAsync(config, id, S.Clusters[id].Parent);
        foreach (var id in plan.Retired)
            await ModelGrain(id).RetireAsync();
        await PublishAssignmentsAsync();
    }

    /// <summary>Makes the cluster's assigned online devices live in it, then starts it from its parent if new.</summary>
    private async Task EnsureStartedAsync(FederationConfig config, int cluster, int parent)
    {
        var grain = ModelGrain(cluster);
        foreach (var (device, assignment) in S.Assignments)
            if (!S.Offline.Contains(device) && Array.IndexOf(assignment.Clusters, cluster) >= 0)
                await grain.SetDeviceLiveAsync(device, true);
        var status = await grain.GetStatusAsync();
        if (status.Phase != FederationPhase.NotStarted) return;
        var model = await ModelGrain(parent).GetModelBytesAsync();
        await grain.StartAsync(config, model);
        _logger.LogInformation("Federation {Federation}: cluster {Cluster} started from cluster {Parent}", Federation, cluster, parent);
    }

    private async Task PublishAssignmentsAsync()
    {
        var versions = new Dictionary<int, long>();
        foreach (var id in S.CentreClusters) versions[id] = (await ModelGrain(id).GetStatusAsync()).ModelVersion;
        var created = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        foreach (var (device, assignment) in S.Assignments.OrderBy(a => a.Key, StringComparer.Ordinal))
        {
            var message = new ClusterAssignmentMessage
            {
                Federation = Federation,
                DeviceId = device,
                Epoch = assignment.Epoch,
                LabelCount = S.LabelCount,
                OutputDimension = S.OutputDimension,
                CreatedUnixMs = created,
            };
            for (var i = 0; i < assignment.Clusters.Length; i++)
            {
                var id = assignment.Clusters[i];
                var assigned = new AssignedCluster { Cluster = id, Prior = assignment.Priors[i], ModelVersion = versions.GetValueOrDefault(id) };
                assigned.LabelDistribution.Add(S.Clusters[id].LabelDistribution);
                message.Clusters.Add(assigned);
            }
            message.Centres.Add(S.Centres);
            message.CentreClusters.Add(S.CentreClusters);
            try
            {
                await _publication.PublishAsync(message, CancellationToken.None);
            }
            catch (Exception e)
            {
                // The assignment is durable here; it is published again on the next decision or resume.
                _logger.LogError(e, "Federation {Federation}: publishing the assignment of {Device} failed", Federation, device);
            }
        }
    }

    private async Task WithdrawAssignmentAsync(string device)
    {
        try
        {
            await _publication.WithdrawAsync(Federation, device, CancellationToken.None);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Federation {Federation}: withdrawing the assignment of {Device} failed", Federation, device);
        }
    }

    /// <summary>The federation's configuration, from its own (reference) model grain; null unless it is a started clustered federation.</summary>
    private async Task<FederationConfig?> ConfigAsync()
    {
        if (_config is not null) return _config;
        var status = await ModelGrain(0).GetStatusAsync();
        return _config = status.Config is { IsClustered: true } config ? config : null;
    }

    private async Task WriteInBackgroundAsync()
    {
        try
        {
            await _writer.WriteAsync();
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Federation {Federation}: could not save the cluster directory", Federation);
        }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        try
        {
            await _writer.WriteAsync().WaitAsync(cancellationToken);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Federation {Federation}: could not save the cluster directory on deactivation", Federation);
        }
    }

    private ClusteringStatus Status() => new()
    {
        Federation = Federation,
        Epoch = S.Epoch,
        K = S.K,
        DecidedAtVersion = S.DecidedAtVersion,
        Clusters = S.Clusters.Values.OrderBy(c => c.Cluster).Select(c => new ClusterSummary
        {
            Cluster = c.Cluster,
            Parent = c.Parent,
            CreatedEpoch = c.CreatedEpoch,
            RetiredEpoch = c.RetiredEpoch,
            Devices = c.RetiredEpoch is null ? S.Assignments.Values.Count(a => a.Primary == c.Cluster) : 0,
            LabelDistribution = c.LabelDistribution.ToArray(),
        }).ToArray(),
        Assignments = S.Assignments.ToDictionary(a => a.Key, a => a.Value.Primary, StringComparer.Ordinal),
        Silhouettes = new Dictionary<int, double>(S.Silhouettes),
        DevicesWithStatistics = S.Statistics.Count,
        LastSkipped = S.LastSkipped,
    };
}
