using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Clustering;

namespace FedEdge.Cloud.Tests;

public sealed class ClusteringPlannerTests
{
    private static DeviceDriftStatistics Statistics(int group, int device, int[]? clusters = null, float[]? weights = null, long epoch = 0) => new()
    {
        WindowIndex = 1,
        SampleCount = 100,
        LabelCount = ClusteringFleet.Labels,
        OutputDimension = ClusteringFleet.Outputs,
        Prototype = ClusteringFleet.Prototype(group, device),
        LabelHistogram = group == 0 ? [90, 10] : [10, 90],
        Clusters = clusters ?? [],
        ClusterLabelWeights = weights ?? [],
        AssignmentEpoch = epoch,
    };

    [Fact]
    public void AFleetLargerThanTheSampleIsClusteredOnASample_AndEveryDeviceGoesToItsGroupsCentre()
    {
        var n = ClusteringPlanner.MaxSample + 301;
        var statistics = Enumerable.Range(0, n).ToDictionary(i => $"d{i:D5}", i => Statistics(i % 3, i));
        var plan = ClusteringPlanner.Plan(statistics, new Dictionary<string, DeviceClusterAssignment>(), [], keptK: 0, nextCluster: 1, epoch: 1, ClusteringFleet.Config);
        Assert.Equal(3, plan.K);
        Assert.Equal([1, 2, 3], plan.ClusterIds);
        Assert.Equal([1, 2, 3], plan.Created);
        Assert.Equal([0, 0, 0], plan.Parents);
        var clusterOfGroup = Enumerable.Range(0, 3).Select(g => plan.Assignments[$"d{g:D5}"].Primary).ToArray();
        Assert.Equal(3, clusterOfGroup.Distinct().Count());
        for (var i = 0; i < n; i++) Assert.Equal(clusterOfGroup[i % 3], plan.Assignments[$"d{i:D5}"].Primary);
    }

    [Fact]
    public void LabelDistributionsComeFromTheReportedClusterWeights_OrFromTheMembersHistogramsForANewCluster()
    {
        // Epoch 1 had clusters 1 (group 0) and 2 (group 1). Devices of group 0 report their FedRC weights on 1 and 2;
        // group 1's devices split into two groups (1 and 2), so a third cluster appears as a copy of cluster 2.
        var statistics = new Dictionary<string, DeviceDriftStatistics>();
        var assignments = new Dictionary<string, DeviceClusterAssignment>();
        for (var i = 0; i < 9; i++)
        {
            var group = i % 3;
            var primary = group == 0 ? 1 : 2;
            statistics[$"d{i}"] = group == 0
                ? Statistics(0, i, [1, 2], [80, 0, 10, 10], epoch: 1)
                : Statistics(group, i);
            assignments[$"d{i}"] = new DeviceClusterAssignment(primary, [1, 2], primary == 1 ? [0.9f, 0.1f] : [0.1f, 0.9f], 1);
        }
        var plan = ClusteringPlanner.Plan(statistics, assignments, [1, 2], keptK: 2, nextCluster: 3, epoch: 2, ClusteringFleet.Config with { ClusterSwitchMargin = 0 });
        Assert.Equal(3, plan.K);
        Assert.Equal([3], plan.Created);
        Assert.Empty(plan.Retired);
        Assert.Equal(2, plan.Parents[Array.IndexOf(plan.ClusterIds, 3)]);
        // Cluster 1: 3 devices × [80, 0] + add-one smoothing → [241, 1] / 242.
        Assert.Equal(241f / 242, plan.LabelDistributions[1][0], 1e-5f);
        // Cluster 2 (reported by group 0's devices: 3 × [10, 10]) → [31, 31] / 62.
        Assert.Equal(0.5f, plan.LabelDistributions[2][0], 1e-5f);
        // Cluster 3 is new: its three members' histograms 3 × [10, 90] → [31, 271] / 302.
        Assert.Equal(31f / 302, plan.LabelDistributions[3][0], 1e-5f);
        Assert.All(plan.Assignments.Values, a => Assert.Equal(1f, a.Priors.Sum(), 1e-5f));
        Assert.All(plan.Assignments.Values, a => Assert.Equal(ClusteringPlanner.PrimaryPrior, a.PriorOn(a.Primary)));
    }
}
