using FedEdge.Cloud.Abstractions;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Clustering;

/// <summary>
/// What one model is within its federation, apart from how it aggregates (its strategy): a federation's only model, the
/// reference model of a FedDAA federation (its versions are the clustering clock, its devices' liveness goes to the
/// cluster directory), or cluster model c (it trains among the devices the directory made live in it and announces
/// P_c(y) with each version). The federation grain runs any strategy under any role.
/// </summary>
public abstract class ModelRole
{
    /// <summary>The role of the model keyed <paramref name="grainKey"/> in a federation configured as <paramref name="config"/>.</summary>
    public static ModelRole For(string grainKey, FederationConfig? config, IGrainFactory grains, ILogger logger)
    {
        var (federation, cluster) = ModelGrainKey.Parse(grainKey);
        return cluster > 0 ? new ClusterModelRole(federation, cluster)
            : config is { IsClustered: true } ? new ClusteringReferenceRole(grains.GetGrain<IClusterDirectoryGrain>(federation), logger, grainKey)
            : new FederationModelRole();
    }

    /// <summary>Whether rounds sample only the devices live in this model (else all registered ones while none has reported).</summary>
    public virtual bool SamplesLiveDevicesOnly => false;

    /// <summary>Whether the model can be retired (cluster models a re-clustering left without devices).</summary>
    public virtual bool CanRetire => false;

    /// <summary>Takes what an accepted update says about this model (a cluster's label weights).</summary>
    public virtual void OnAccepted(ReadOnlySpan<byte> envelope)
    {
    }

    /// <summary>The P_c(y) to announce with the version being committed (empty when the model announces none).</summary>
    public virtual float[] TakeVersionLabels(float[] current) => [];

    /// <summary>A device of the federation came or went.</summary>
    public virtual Task OnDeviceLiveAsync(string deviceId, bool live) => Task.CompletedTask;

    /// <summary>A version was committed and published.</summary>
    public virtual void OnVersionPublished(long version)
    {
    }
}

/// <summary>A federation's only model.</summary>
public sealed class FederationModelRole : ModelRole;

/// <summary>The reference model of a FedDAA federation (cluster 0): its versions drive the <see cref="IClusterDirectoryGrain"/>.</summary>
public sealed class ClusteringReferenceRole(IClusterDirectoryGrain directory, ILogger logger, string model) : ModelRole
{
    public override Task OnDeviceLiveAsync(string deviceId, bool live) => directory.SetDeviceOnlineAsync(deviceId, live);

    /// <summary>Tells the directory that the reference model advanced (not awaited by the commit).</summary>
    public override void OnVersionPublished(long version) => _ = TickAsync(version);

    private async Task TickAsync(long version)
    {
        try
        {
            await directory.OnReferenceVersionAsync(version);
        }
        catch (Exception e)
        {
            logger.LogError(e, "Federation {Federation}: the cluster directory failed at reference v{Version}", model, version);
        }
    }
}

/// <summary>Cluster model c &gt; 0 of a FedDAA federation: its own devices, and P_c(y) from the label weights of what it aggregates.</summary>
public sealed class ClusterModelRole(string federation, int cluster) : ModelRole
{
    private readonly ClusterLabelWeightSum _labelWeights = new();

    public string Federation { get; } = federation;

    public int Cluster { get; } = cluster;

    public override bool SamplesLiveDevicesOnly => true;

    public override bool CanRetire => true;

    public override void OnAccepted(ReadOnlySpan<byte> envelope) => _labelWeights.Add(envelope, Cluster);

    /// <summary>P_c(y) from the label weights of the updates the version aggregated, else the last one announced.</summary>
    public override float[] TakeVersionLabels(float[] current) => _labelWeights.TakeDistribution() ?? current;
}
