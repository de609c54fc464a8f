using System.Numerics.Tensors;
using FedEdge.Cloud.Abstractions;
using FedEdge.Drift;

namespace FedEdge.Cloud.Clustering;

/// <summary>A device's assignment: its primary (k-means) cluster and its FedRC priors over the live clusters.</summary>
[GenerateSerializer, Immutable]
public sealed record DeviceClusterAssignment(
    [property: Id(0)] int Primary,
    [property: Id(1)] int[] Clusters,
    [property: Id(2)] float[] Priors,
    [property: Id(3)] long Epoch)
{
    /// <summary>The device's prior on <paramref name="cluster"/> (0 when not listed).</summary>
    public float PriorOn(int cluster)
    {
        var at = Array.IndexOf(Clusters, cluster);
        return at < 0 ? 0 : Priors[at];
    }
}

/// <summary>One re-clustering, computed from the directory's state, for the directory grain to carry out.</summary>
public sealed record ClusteringPlan(
    int K,
    ClusterCountDecision Decision,
    int[] ClusterIds,
    int[] Parents,
    IReadOnlyList<int> Created,
    IReadOnlyList<int> Retired,
    IReadOnlyDictionary<string, DeviceClusterAssignment> Assignments,
    IReadOnlyDictionary<int, float[]> LabelDistributions,
    int NextCluster);

/// <summary>
/// The FedDAA decision of the cloud (arXiv 2506.21054, §4), as a plain function of the directory's state:
/// <list type="number">
/// <item>k and the centres: <see cref="ClusterCountSelector"/> over the devices' latest prototypes (k = 2..MaxClusters by
/// mean silhouette, hysteresis <c>ClusterSwitchMargin</c>, k-means seeded by the federation's seed so every replica
/// agrees);</item>
/// <item>identities: <see cref="ClusterLineage"/> carries the live cluster models over (a new cluster continues the model
/// its devices had the largest prior on, or starts as a copy of it; the first clustering starts every cluster from the
/// reference model, cluster 0); models no cluster continues are retired;</item>
/// <item>priors: <see cref="PrimaryPrior"/> on the device's k-means cluster, the rest spread evenly over the other live
/// clusters (FedDAA's code restarts the soft assignment this way, which breaks the symmetry between copies of a parent);</item>
/// <item>P_c(y): <see cref="SoftClusterAssignment.LabelDistributions"/> over the devices' summed FedRC cluster × label
/// weights for cluster c; a new cluster, which no device has weighed yet, uses its members' label histograms.</item>
/// </list>
/// </summary>
public static class ClusteringPlanner
{
    /// <summary>A device's prior on its own cluster right after a re-clustering.</summary>
    public const float PrimaryPrior = 0.9f;

    /// <summary>
    /// Largest number of prototypes the cluster count is chosen on. The silhouette needs all n² distances (4n² bytes),
    /// so a larger fleet is clustered on a seeded sample of this size and every device then goes to its nearest centre.
    /// </summary>
    public const int MaxSample = 2048;

    /// <param name="statistics">Latest statistics of each device (all of shape R × D).</param>
    /// <param name="assignments">Current assignments (for the priors that give models their lineage).</param>
    /// <param name="liveClusters">Live cluster model ids (≥ 1).</param>
    /// <param name="keptK">The k kept by the last decision (hysteresis), 0 before the first.</param>
    public static ClusteringPlan Plan(
        IReadOnlyDictionary<string, DeviceDriftStatistics> statistics,
        IReadOnlyDictionary<string, DeviceClusterAssignment> assignments,
        IReadOnlyList<int> liveClusters,
        int keptK,
        int nextCluster,
        long epoch,
        FederationConfig config)
    {
        var devices = statistics.Keys.Order(StringComparer.Ordinal).ToArray();
        var n = devices.Length;
        var first = statistics[devices[0]];
        int r = first.LabelCount, dimension = r * first.OutputDimension;
        var points = new float[n * dimension];
        for (var i = 0; i < n; i++) statistics[devices[i]].Prototype.CopyTo(points, i * dimension);

        var selector = new ClusterCountSelector(new ClusterCountOptions
        {
            MaxClusters = config.MaxClusters,
            SwitchMargin = config.ClusterSwitchMargin,
            Seed = config.Seed,
        });
        if (keptK >= 2 && keptK <= config.MaxClusters) selector.Restore(keptK);
        var sample = n <= MaxSample ? null : Sample(n, MaxSample, unchecked(config.Seed * 7919 + (int)epoch));
        var decision = sample is null ? selector.Select(points, n, dimension) : selector.Select(Rows(points, dimension, sample), sample.Length, dimension);
        var k = decision.K;
        var groups = sample is null ? decision.Clustering.Assignments : Nearest(points, n, decision.Clustering);

        var models = liveClusters.Order().ToArray();
        var affinity = new float[n * models.Length];
        for (var i = 0; i < n; i++)
            for (var m = 0; m < models.Length; m++)
                affinity[i * models.Length + m] = Affinity(statistics[devices[i]], assignments.GetValueOrDefault(devices[i]), models[m]);
        var lineage = ClusterLineage.Match(groups, affinity, k, models.Length);

        var ids = new int[k];
        var parents = new int[k];
        var created = new List<int>();
        for (var j = 0; j < k; j++)
        {
            parents[j] = lineage.Parents[j] < 0 ? 0 : models[lineage.Parents[j]];
            if (lineage.Continues[j]) ids[j] = parents[j];
            else
            {
                ids[j] = nextCluster++;
                created.Add(ids[j]);
            }
        }
        var retired = models.Except(ids).ToList();

        var byDevice = new Dictionary<string, DeviceClusterAssignment>(StringComparer.Ordinal);
        var others = k > 1 ? (1 - PrimaryPrior) / (k - 1) : 0;
        for (var i = 0; i < n; i++)
        {
            var priors = new float[k];
            for (var j = 0; j < k; j++) priors[j] = j == groups[i] ? (k > 1 ? PrimaryPrior : 1) : others;
            byDevice[devices[i]] = new DeviceClusterAssignment(ids[groups[i]], ids, priors, epoch);
        }

        var histograms = new float[k * r];
        for (var j = 0; j < k; j++)
        {
            var row = histograms.AsSpan(j * r, r);
            foreach (var s in statistics.Values)
            {
                var at = Array.IndexOf(s.Clusters, ids[j]);
                if (at < 0) continue;
                for (var y = 0; y < r; y++) row[y] += s.ClusterLabelWeights[at * r + y];
            }
            if (Sum(row) > 0) continue;
            for (var i = 0; i < n; i++)
                if (groups[i] == j)
                    for (var y = 0; y < r; y++) row[y] += statistics[devices[i]].LabelHistogram[y];
        }
        var distributions = SoftClusterAssignment.LabelDistributions(histograms, k, r);
        var labels = new Dictionary<int, float[]>();
        for (var j = 0; j < k; j++) labels[ids[j]] = distributions.AsSpan(j * r, r).ToArray();

        return new ClusteringPlan(k, decision, ids, parents, created, retired, byDevice, labels, nextCluster);
    }

    /// <summary>
    /// The device's prior on a model: its own FedRC weight mass on it when its statistics were computed under the
    /// current assignment's clusters, else the prior the cloud assigned.
    /// </summary>
    private static float Affinity(DeviceDriftStatistics statistics, DeviceClusterAssignment? assignment, int cluster)
    {
        var r = statistics.LabelCount;
        if (statistics.Clusters.Length > 0 && (assignment is null || statistics.AssignmentEpoch == assignment.Epoch))
        {
            var total = Sum(statistics.ClusterLabelWeights);
            var at = Array.IndexOf(statistics.Clusters, cluster);
            if (total > 0) return at < 0 ? 0 : Math.Clamp(Sum(statistics.ClusterLabelWeights.AsSpan(at * r, r)) / total, 0, 1);
        }
        return assignment?.PriorOn(cluster) ?? 0;
    }

    private static float Sum(ReadOnlySpan<float> values) => TensorPrimitives.Sum(values);

    /// <summary><paramref name="count"/> distinct row indices of [0, n), ascending (partial Fisher–Yates, seeded).</summary>
    private static int[] Sample(int n, int count, int seed)
    {
        var indices = Enumerable.Range(0, n).ToArray();
        var random = new Random(seed);
        for (var i = 0; i < count; i++)
        {
            var j = random.Next(i, n);
            (indices[i], indices[j]) = (indices[j], indices[i]);
        }
        var chosen = indices[..count];
        Array.Sort(chosen);
        return chosen;
    }

    private static float[] Rows(float[] points, int dimension, int[] rows)
    {
        var result = new float[rows.Length * dimension];
        for (var i = 0; i < rows.Length; i++) points.AsSpan(rows[i] * dimension, dimension).CopyTo(result.AsSpan(i * dimension));
        return result;
    }

    private static int[] Nearest(float[] points, int n, KMeansResult fit)
    {
        var groups = new int[n];
        for (var i = 0; i < n; i++)
        {
            var point = points.AsSpan(i * fit.Dimension, fit.Dimension);
            var best = float.PositiveInfinity;
            for (var c = 0; c < fit.K; c++)
            {
                var distance = TensorPrimitives.Distance(point, fit.Centre(c));
                if (distance < best)
                {
                    best = distance;
                    groups[i] = c;
                }
            }
        }
        return groups;
    }
}
