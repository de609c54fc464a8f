using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge.Drift;
using FedEdge.Edge.Models;
using FedEdge.Edge.Tests.Agent;
using FedEdge.Protocol.Messages;

namespace FedEdge.Edge.Tests.Drift;

/// <summary>
/// FedDAA's verdicts on constructed shifts of one concept, with a reference model trained on it. Centres: cluster 3 =
/// the original concept's prototype, cluster 7 = the relabelled concept's (what the cloud's k-means would find).
/// </summary>
public sealed class DriftMonitorTests : IDisposable
{
    private static readonly Lazy<byte[]> ReferenceBytes = new(() =>
    {
        using var federation = new TestFederation();
        return DriftTestData.Trained(federation.ModelBytes(), TestFederation.Data(600, seed: 40));
    });

    private readonly ModelForwardPass _forward = new();
    private readonly Dataset _old = TestFederation.Data(300, seed: 1);
    private readonly Dataset _new = TestFederation.Data(300, seed: 2);

    public void Dispose() => _forward.Dispose();

    private static VerifiedModel Reference => DriftTestData.Verified(ReferenceBytes.Value, 5);

    private ClusterAssignment TwoConcepts() => DriftTestData.Assignment(2, [(3, 1f)],
        [(3, DriftTestData.PrototypeOf(ReferenceBytes.Value, _old)), (7, DriftTestData.PrototypeOf(ReferenceBytes.Value, DriftTestData.Relabelled(_old)))]);

    private (DriftMonitor Monitor, DriftObservation Observation) Judge(Dataset current, ClusterAssignment? assignment, int maxSamples = 512)
    {
        var monitor = new DriftMonitor(new EdgeDriftOptions { Enabled = true, MaxStatisticsSamples = maxSamples }, _forward);
        var windows = new InMemoryDataWindows(_old);
        var first = monitor.Observe(Reference, windows.Poll(), assignment, DateTimeOffset.UnixEpoch);
        Assert.Null(first.Assessment); // nothing to compare the first window with
        Assert.Null(monitor.PendingReport);
        windows.Advance(current);
        return (monitor, monitor.Observe(Reference, windows.Poll(), assignment, DateTimeOffset.FromUnixTimeMilliseconds(1234)));
    }

    [Fact]
    public void Relabelled_inputs_are_real_drift_and_drop_the_old_window()
    {
        var (monitor, observation) = Judge(DriftTestData.Relabelled(_new), TwoConcepts());
        Assert.Equal(DriftClass.Real, observation.Assessment!.Class);
        Assert.Equal((3, 7), (observation.PreviousCluster, observation.CurrentCluster));
        Assert.Equal(TrainingWindow.CurrentOnly, monitor.TrainingWindow);
        var report = monitor.PendingReport!;
        Assert.Equal(DriftKind.Real, report.Kind);
        Assert.Equal(1, report.WindowIndex);
        Assert.Equal(1234, report.DetectedUnixMs);
        Assert.Equal((3, 7), (report.PreviousCentre, report.CurrentCentre));
        Assert.Equal(300, report.SampleCount);
        Assert.True(report.FeatureShift < 0.3, $"feature shift {report.FeatureShift}");
    }

    [Fact]
    public void Moved_inputs_with_the_same_labels_are_virtual_drift_and_keep_the_old_window()
    {
        var (monitor, observation) = Judge(DriftTestData.Shifted(_new, 1.5f), TwoConcepts());
        Assert.Equal(DriftClass.Virtual, observation.Assessment!.Class);
        Assert.True(observation.Assessment.FeatureShift > 0.3);
        Assert.Equal(TrainingWindow.PreviousAndCurrent, monitor.TrainingWindow);
        Assert.Equal(DriftKind.Virtual, monitor.PendingReport!.Kind);
    }

    [Fact]
    public void A_new_label_mix_is_label_drift_and_keeps_the_old_window()
    {
        var (monitor, observation) = Judge(DriftTestData.LabelMix(_new, [0]), TwoConcepts());
        Assert.Equal(DriftClass.Label, observation.Assessment!.Class);
        Assert.Equal(observation.PreviousCluster, observation.CurrentCluster);
        Assert.True(observation.Assessment.LabelShift > 0.2);
        Assert.Equal(TrainingWindow.PreviousAndCurrent, monitor.TrainingWindow);
        Assert.Equal(DriftKind.Label, monitor.PendingReport!.Kind);
    }

    [Fact]
    public void A_fresh_sample_of_the_same_data_is_no_drift()
    {
        var (monitor, observation) = Judge(_new, TwoConcepts());
        Assert.Equal(DriftClass.None, observation.Assessment!.Class);
        Assert.Equal(TrainingWindow.PreviousAndCurrent, monitor.TrainingWindow);
        Assert.Equal(DriftKind.None, monitor.PendingReport!.Kind);
    }

    [Fact]
    public void Without_an_assignment_only_the_statistics_judge_and_centres_are_unknown()
    {
        var (monitor, observation) = Judge(DriftTestData.LabelMix(_new, [1]), assignment: null);
        Assert.Equal(DriftClass.Label, observation.Assessment!.Class);
        Assert.Equal((-1, -1), (monitor.PendingReport!.PreviousCentre, monitor.PendingReport.CurrentCentre));

        // Real drift needs the centres: without them relabelled inputs cannot be told from the old concept.
        var (_, relabelled) = Judge(DriftTestData.Relabelled(_new), assignment: null);
        Assert.NotEqual(DriftClass.Real, relabelled.Assessment!.Class);
    }

    [Fact]
    public void A_window_is_judged_once_and_the_report_is_kept_until_sent()
    {
        var (monitor, _) = Judge(DriftTestData.Relabelled(_new), TwoConcepts());
        var windows = new InMemoryDataWindows(_old);
        windows.Advance(DriftTestData.Relabelled(_new));
        var again = monitor.Observe(DriftTestData.Verified(ReferenceBytes.Value, 6), windows.Poll(), TwoConcepts(), DateTimeOffset.UnixEpoch);
        Assert.Null(again.Assessment);
        Assert.Equal(DriftKind.Real, monitor.PendingReport!.Kind);
        Assert.Equal(6, again.ReferenceVersion); // statistics follow the newest reference model
        monitor.ReportSent();
        Assert.Null(monitor.PendingReport);
        Assert.Equal(TrainingWindow.CurrentOnly, monitor.TrainingWindow);
    }

    [Fact]
    public void The_prototype_pass_is_capped_and_the_message_carries_the_whole_window_counts()
    {
        var big = TestFederation.Data(2000, seed: 9);
        var (_, observation) = Judge(big, TwoConcepts(), maxSamples: 100);
        Assert.Equal(100, observation.Current.Count);
        Assert.Equal(100, observation.Current.Prototype.Counts.Sum());
        Assert.Equal(100, observation.Previous!.Count);

        var message = DriftMonitor.ToMessage(observation);
        Assert.Equal(1, message.WindowIndex);
        Assert.Equal(2000, message.SampleCount);
        Assert.Equal((TestFederation.Classes, TestFederation.Classes), (message.LabelCount, message.OutputDimension));
        Assert.Equal(observation.Current.Prototype.Values, message.Prototype);
        Assert.Equal(observation.Previous.Prototype.Values, message.PreviousPrototype);
        Assert.Equal(big.ClassCounts().Select(c => (float)c), message.LabelHistogram);
        Assert.Empty(message.ClusterLabelWeights);
    }

    [Fact]
    public void Centres_of_another_shape_are_not_used()
    {
        // Centres for 4 model outputs while the reference model has 3: the centre rule is skipped, not mis-applied.
        var wrong = DriftTestData.Assignment(1, [(0, 1f)], [(0, new float[TestFederation.Classes * 4])]);
        wrong.OutputDimension = 4;
        var (monitor, observation) = Judge(DriftTestData.Relabelled(_new), wrong);
        Assert.NotEqual(DriftClass.Real, observation.Assessment!.Class);
        Assert.Equal((-1, -1), (monitor.PendingReport!.PreviousCentre, monitor.PendingReport.CurrentCentre));
    }
}
