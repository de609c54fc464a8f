using FedEdge.Data;
using FedEdge.Edge.Drift;
using FedEdge.Edge.Tests.Agent;

namespace FedEdge.Edge.Tests.Drift;

public sealed class ClusterTrainingPlannerTests : IDisposable
{
    private static readonly Lazy<(byte[] Concept, byte[] Relabelled)> Models = new(() =>
    {
        using var federation = new TestFederation();
        var data = TestFederation.Data(600, seed: 40);
        return (DriftTestData.Trained(federation.ModelBytes(), data), DriftTestData.Trained(federation.ModelBytes(), DriftTestData.Relabelled(data)));
    });

    private readonly ModelForwardPass _forward = new();

    public void Dispose() => _forward.Dispose();

    private static IReadOnlyList<Models.VerifiedModel> TwoClusters() =>
        [DriftTestData.Verified(Models.Value.Concept, 4, cluster: 1), DriftTestData.Verified(Models.Value.Relabelled, 9, cluster: 2)];

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public void Samples_go_to_the_cluster_model_that_fits_their_concept(bool relabelled, int expected)
    {
        var data = TestFederation.Data(200, seed: 3);
        if (relabelled)
            data = DriftTestData.Relabelled(data);
        var planner = new ClusterTrainingPlanner(_forward);
        var assignment = DriftTestData.Assignment(1, [(1, 0.5f), (2, 0.5f)], []);
        var plan = planner.Plan(assignment, TwoClusters(), data, TestFederation.Classes, new Random(1));

        Assert.Equal([1, 2], plan.Clusters);
        var mine = plan.SamplesOf(expected);
        var other = plan.SamplesOf(3 - expected);
        Assert.Equal(data.Count, mine.Length + other.Length);
        Assert.True(mine.Length >= 0.85 * data.Count, $"{mine.Length} of {data.Count} samples drew cluster {expected}");
        Assert.True(planner.Prior(expected) >= 0.85f, $"prior {planner.Prior(expected)}");
        // The reported histogram is Σ_i w_ic·1[y_i = r]: each label's total over clusters is its count.
        var counts = data.ClassCounts();
        for (var r = 0; r < TestFederation.Classes; r++)
            Assert.Equal(counts[r], plan.Assignment.LabelHistogram[r] + plan.Assignment.LabelHistogram[TestFederation.Classes + r], 2);
    }

    [Fact]
    public void One_cluster_trains_on_every_sample()
    {
        var data = TestFederation.Data(50, seed: 3);
        var planner = new ClusterTrainingPlanner(_forward);
        var plan = planner.Plan(DriftTestData.Assignment(1, [(4, 1f)], []), [DriftTestData.Verified(Models.Value.Relabelled, 1, cluster: 4)], data, TestFederation.Classes, new Random(1));
        Assert.Equal(Enumerable.Range(0, 50), plan.SamplesOf(4));
        Assert.Equal(data.ClassCounts().Select(c => (float)c), plan.Assignment.LabelHistogram);
        Assert.Empty(plan.SamplesOf(1));
    }

    [Fact]
    public void The_label_term_divides_by_the_cluster_label_distribution()
    {
        // Worked example: the same model in both clusters (equal losses), π = (½, ½), P_1(y) = (0.8, 0.1, 0.1), P_2 uniform:
        // w_i1 = 1 / (1 + P_1(y_i) / P_2(y_i)) = 1 / (1 + 2.4) ≈ 0.294 for y = 0 and 1 / (1 + 0.3) ≈ 0.769 for y = 1, 2.
        var same = Models.Value.Concept;
        var data = TestFederation.Data(30, seed: 5);
        var planner = new ClusterTrainingPlanner(_forward);
        var assignment = DriftTestData.Assignment(1, [(1, 0.5f), (2, 0.5f)], [], [[0.8f, 0.1f, 0.1f], [1 / 3f, 1 / 3f, 1 / 3f]]);
        var plan = planner.Plan(assignment, [DriftTestData.Verified(same, 1, cluster: 1), DriftTestData.Verified(same, 1, cluster: 2)], data, TestFederation.Classes, new Random(1));
        for (var i = 0; i < data.Count; i++)
            Assert.Equal(data.Labels[i] == 0 ? 1 / 3.4f : 1 / 1.3f, plan.Assignment.WeightsOf(i)[0], 3);
    }

    private static Models.VerifiedModel Announced(byte[] model, int cluster, long createdUnixMs, float[] labels)
    {
        var announcement = new FedEdge.Protocol.Messages.ModelAnnouncement { Federation = TestFederation.Name, ModelVersion = 2, Cluster = cluster, CreatedUnixMs = createdUnixMs };
        announcement.LabelDistribution.AddRange(labels);
        return new Models.VerifiedModel(announcement, [], model);
    }

    [Fact]
    public void The_label_term_uses_the_announced_label_distribution_of_the_version_trained()
    {
        // The worked example above, with P_1(y) = (0.8, 0.1, 0.1) signed into cluster 1's announcement (newer than the
        // assignment, which still says uniform): the same weights.
        var same = Models.Value.Concept;
        var data = TestFederation.Data(30, seed: 5);
        var planner = new ClusterTrainingPlanner(_forward);
        var uniform = new[] { 1 / 3f, 1 / 3f, 1 / 3f };
        var assignment = DriftTestData.Assignment(1, [(1, 0.5f), (2, 0.5f)], [], [uniform, uniform]);
        assignment.CreatedUnixMs = 1_000;
        var plan = planner.Plan(assignment, [Announced(same, 1, 2_000, [0.8f, 0.1f, 0.1f]), Announced(same, 2, 2_000, [])], data, TestFederation.Classes, new Random(1));
        for (var i = 0; i < data.Count; i++)
            Assert.Equal(data.Labels[i] == 0 ? 1 / 3.4f : 1 / 1.3f, plan.Assignment.WeightsOf(i)[0], 3);
    }

    [Fact]
    public void The_newest_label_distribution_wins_then_the_other_then_uniform()
    {
        float[] announced = [0.8f, 0.1f, 0.1f];
        float[] assigned = [0.2f, 0.4f, 0.4f];
        var model = Models.Value.Concept;
        var assignment = DriftTestData.Assignment(1, [(1, 1f)], [], [assigned]);
        var r = TestFederation.Classes;

        assignment.CreatedUnixMs = 1_000;
        Assert.Equal(announced, ClusterTrainingPlanner.LabelDistributionOf(Announced(model, 1, 1_000, announced), assignment, r));
        // A re-clustering after this version was published: its P_c(y) is the newer.
        assignment.CreatedUnixMs = 5_000;
        Assert.Equal(assigned, ClusterTrainingPlanner.LabelDistributionOf(Announced(model, 1, 1_000, announced), assignment, r));
        // Only one of them known, or of the right length: that one.
        Assert.Equal(assigned, ClusterTrainingPlanner.LabelDistributionOf(Announced(model, 1, 9_000, []), assignment, r));
        Assert.Equal(assigned, ClusterTrainingPlanner.LabelDistributionOf(Announced(model, 1, 9_000, [0.5f, 0.5f]), assignment, r));
        Assert.Equal(announced, ClusterTrainingPlanner.LabelDistributionOf(Announced(model, 1, 1_000, announced), DriftTestData.Assignment(1, [(1, 1f)], []), r));
        // Neither: null (the planner uses the uniform distribution).
        Assert.Null(ClusterTrainingPlanner.LabelDistributionOf(Announced(model, 1, 1_000, []), DriftTestData.Assignment(1, [(1, 1f)], []), r));
    }

    [Fact]
    public void Priors_carry_over_between_rounds_and_restart_from_the_cloud_at_a_new_epoch()
    {
        var data = TestFederation.Data(100, seed: 3);
        var planner = new ClusterTrainingPlanner(_forward);
        var first = planner.Plan(DriftTestData.Assignment(1, [(1, 0.5f), (2, 0.5f)], []), TwoClusters(), data, TestFederation.Classes, new Random(1));
        Assert.Equal(first.Assignment.Prior[0], planner.Prior(1));
        // Same epoch: the second round starts from the device's own π (closer to cluster 1), so cluster 1 gains weight.
        var second = planner.Plan(DriftTestData.Assignment(1, [(1, 0.5f), (2, 0.5f)], []), TwoClusters(), data, TestFederation.Classes, new Random(1));
        Assert.True(second.Assignment.Prior[0] > first.Assignment.Prior[0]);
        // A new epoch resets π to the cloud's priors: a prior of 0.01 on cluster 1 lowers its share below the first round's.
        var reset = planner.Plan(DriftTestData.Assignment(2, [(1, 0.01f), (2, 0.99f)], []), TwoClusters(), data, TestFederation.Classes, new Random(1));
        Assert.True(reset.Assignment.Prior[0] < first.Assignment.Prior[0]);
    }
}
