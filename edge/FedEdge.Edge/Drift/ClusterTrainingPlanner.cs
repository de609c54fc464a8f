using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge.Models;
using FedEdge.Protocol.Messages;

namespace FedEdge.Edge.Drift;

/// <summary>Which local samples train which cluster model in one round, from FedRC's soft assignment.</summary>
/// <param name="Clusters">The clusters of the assignment, in the order of <see cref="Assignment"/>'s columns.</param>
/// <param name="Drawn">The cluster each sample drew from its weights (index into <see cref="Clusters"/>).</param>
public sealed record ClusterPlan(int[] Clusters, SoftAssignment Assignment, int[] Drawn)
{
    /// <summary>Indices of the samples that drew <paramref name="cluster"/> (a cluster id; empty when it is not in the plan).</summary>
    public int[] SamplesOf(int cluster)
    {
        var column = Array.IndexOf(Clusters, cluster);
        if (column < 0)
            return [];
        var samples = new List<int>();
        for (var i = 0; i < Drawn.Length; i++)
        {
            if (Drawn[i] == column)
                samples.Add(i);
        }
        return [.. samples];
    }
}

/// <summary>
/// FedRC soft assignment on the device, as FedDAA's code uses it (arXiv 2506.21054; Guo et al., ICML 2024; algorithms.md
/// §6): w_ic = softmax_c(log π_c − ℓ_c(x_i, y_i) − log P_c(y_i)) over the assigned clusters whose model the device holds,
/// π_c ← mean_i w_ic kept on the device from round to round (reset to the cloud's priors by a new assignment epoch),
/// then each sample draws one cluster from w_i· and cluster model c trains on the samples that drew c
/// (<see cref="SoftClusterAssignment.SampleClusters"/>). Per-sample losses ℓ_c take one forward pass over the training
/// data per cluster model version (cached per version and data set) and never leave the device; what is reported is the
/// cluster × label weight histogram. P_c(y) is the newest the device holds (<see cref="LabelDistributionOf"/>): the model
/// version's announcement or the assignment, else uniform. With one cluster every sample trains it and no loss is
/// computed. Not thread-safe.
/// </summary>
public sealed class ClusterTrainingPlanner(ModelForwardPass forward)
{
    private readonly Dictionary<int, (long Version, Dataset Data, float[] Losses)> _losses = [];
    private readonly Dictionary<int, float> _priors = [];
    private long _epoch = -1;

    /// <summary>The device's current prior π_c of <paramref name="cluster"/> (NaN before the first plan of an epoch).</summary>
    public float Prior(int cluster) => _priors.TryGetValue(cluster, out var p) ? p : float.NaN;

    /// <summary>
    /// Plans a round on <paramref name="data"/>: <paramref name="models"/> are the latest verified models of the assigned
    /// clusters the device holds (at least one), <paramref name="labelCount"/> is R.
    /// </summary>
    public ClusterPlan Plan(ClusterAssignment assignment, IReadOnlyList<VerifiedModel> models, Dataset data, int labelCount, Random random)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(data);
        if (models.Count == 0)
            throw new ArgumentException("A cluster plan needs at least one cluster model.", nameof(models));
        if (assignment.Epoch != _epoch)
        {
            _epoch = assignment.Epoch;
            _priors.Clear();
            foreach (var assigned in assignment.Clusters)
                _priors[assigned.Cluster] = assigned.Prior;
        }
        var clusters = models.Select(m => m.Cluster).ToArray();
        var c = clusters.Length;
        var n = data.Count;
        var losses = new float[n * c];
        if (c > 1)
        {
            for (var j = 0; j < c; j++)
            {
                var perSample = LossesOf(models[j], data);
                for (var i = 0; i < n; i++)
                    losses[i * c + j] = perSample[i];
            }
        }
        var prior = new float[c];
        var distributions = new float[c * labelCount];
        for (var j = 0; j < c; j++)
        {
            prior[j] = _priors.GetValueOrDefault(clusters[j], 1f / c);
            var row = distributions.AsSpan(j * labelCount, labelCount);
            if (LabelDistributionOf(models[j], assignment, labelCount) is { } known)
            {
                for (var r = 0; r < labelCount; r++)
                    row[r] = known[r];
            }
            else
            {
                row.Fill(1f / labelCount); // no P_c(y) yet: uniform, the label term drops out
            }
        }
        var soft = SoftClusterAssignment.Assign(losses, data.Labels, prior, distributions, labelCount);
        for (var j = 0; j < c; j++)
            _priors[clusters[j]] = soft.Prior[j];
        var drawn = c == 1 ? new int[n] : SoftClusterAssignment.SampleClusters(soft, random);
        return new ClusterPlan(clusters, soft, drawn);
    }

    /// <summary>
    /// The newest P_c(y) the device holds for the cluster of <paramref name="model"/>: the one signed into the model
    /// version's announcement (from the updates the cloud aggregated into it) or the one in the assignment (from the last
    /// re-clustering), whichever the cloud created later (the announcement on a tie); either only when it has R entries.
    /// Null when neither has one: the caller uses the uniform distribution.
    /// </summary>
    public static IReadOnlyList<float>? LabelDistributionOf(VerifiedModel model, ClusterAssignment assignment, int labelCount)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(assignment);
        var announced = model.Announcement.LabelDistribution.Count == labelCount ? model.Announcement.LabelDistribution : null;
        var assigned = assignment.Clusters.FirstOrDefault(a => a.Cluster == model.Cluster)?.LabelDistribution is { } a && a.Count == labelCount ? a : null;
        if (announced is null || assigned is null)
            return announced ?? assigned;
        return model.Announcement.CreatedUnixMs >= assignment.CreatedUnixMs ? announced : assigned;
    }

    private float[] LossesOf(VerifiedModel model, Dataset data)
    {
        if (_losses.TryGetValue(model.Cluster, out var cached) && cached.Version == model.Version && ReferenceEquals(cached.Data, data))
            return cached.Losses;
        var losses = forward.Losses(model, data);
        _losses[model.Cluster] = (model.Version, data, losses);
        return losses;
    }
}
