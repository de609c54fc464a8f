using FedEdge.Compression.ErrorFeedback;
using FedEdge.Data;
using FedEdge.Edge.Drift;
using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Tests.Agent;
using FedEdge.Edge.Tests.Brokers;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;

namespace FedEdge.Edge.Tests.Drift;

/// <summary>The agent with FedDAA on, against the embedded broker, the test playing the cloud.</summary>
public sealed class DriftAgentTests : AgentOverBrokerTest
{
    private EdgeAgentOptions Options(bool drift = true) => new()
    {
        StateDirectory = Dir.Combine("state"),
        Broker = Broker.Address.ToString(),
        Training = new EdgeTrainingOptions { LocalEpochs = 1, BatchSize = 16, LearningRate = 0.1f, Threads = 1, Seed = 3 },
        Compression = new EdgeCompressionOptions { Codec = "fp32", ErrorFeedback = "ef14" },
        Mqtt = new EdgeMqttOptions { ReconnectMinDelay = TimeSpan.FromMilliseconds(50), ReconnectMaxDelay = TimeSpan.FromMilliseconds(500), KeepAlive = TimeSpan.FromSeconds(5) },
        Outbox = new EdgeOutboxOptions { Fsync = false },
        Drift = new EdgeDriftOptions { Enabled = drift },
    };

    private (EdgeAgent Agent, Task Running, CancellationTokenSource Stop) StartAgent(EdgeAgentOptions options, IEdgeDataWindows windows)
    {
        var agent = new EdgeAgent(options, Federation.Identity(), windows);
        var stop = new CancellationTokenSource();
        return (agent, agent.RunAsync(stop.Token), stop);
    }

    private async Task PublishModelAsync(long version, byte[] bytes, int cluster = 0, int announcedCluster = -1)
    {
        var published = new ModelPublisher(Federation.CloudKey).Publish(TestFederation.Name, version, bytes, new ModelPublishOptions
        {
            ChunkSize = 1024,
            ParameterCount = Federation.ParameterCount,
            Cluster = announcedCluster < 0 ? cluster : announcedCluster,
        });
        foreach (var (topic, payload) in published.Messages())
        {
            // A replay onto another cluster's topic: the same signed bytes, the topic of `cluster`.
            var target = announcedCluster < 0 ? topic : topic.Replace($"/cluster/{announcedCluster}/", $"/cluster/{cluster}/", StringComparison.Ordinal);
            await Cloud.PublishAsync(target, payload, retain: true);
        }
    }

    private async Task PublishAssignmentAsync(ClusterAssignment assignment, SigningKeyPair? signer = null) =>
        await Cloud.PublishAsync(MqttTopics.ClusterAssignment(TestFederation.Name, Federation.DeviceId),
            new ClusterAssignmentSigner(signer ?? Federation.CloudKey).Sign(assignment), retain: true);

    private List<UpdateEnvelope> Updates()
    {
        var topic = MqttTopics.Update(TestFederation.Name, Federation.DeviceId);
        var reassembler = new UpdateReassembler(new ReassemblyOptions());
        var verifier = new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = TestFederation.Name }, Federation.DeviceKeys);
        var accepted = new List<UpdateEnvelope>();
        foreach (var (_, t, payload, _) in Broker.Published)
        {
            if (t != topic)
                continue;
            var frame = reassembler.Accept(Federation.DeviceId, payload);
            if (frame.Outcome != FrameOutcome.Complete)
                continue;
            var verified = verifier.Verify(frame.Envelope.Span, Federation.DeviceId, Federation.ParameterCount);
            Assert.True(verified.IsAccepted, verified.ToString());
            accepted.Add(verified.Value.Envelope);
        }
        return accepted;
    }

    /// <summary>
    /// Publishes the reference (cluster 0, v1), cluster 1 (v4) trained on the device's concept and cluster 2 (v6) on the
    /// relabelled one; returns cluster 1's model bytes.
    /// </summary>
    private async Task<byte[]> PublishTwoConceptClustersAsync()
    {
        var training = TestFederation.Data(600, seed: 40);
        var concept = DriftTestData.Trained(Federation.ModelBytes(), training);
        await PublishModelAsync(1, Federation.ModelBytes());
        await PublishModelAsync(4, concept, cluster: 1);
        await PublishModelAsync(6, DriftTestData.Trained(Federation.ModelBytes(), DriftTestData.Relabelled(training)), cluster: 2);
        return concept;
    }

    private static long RoundsOf(string errorFeedbackFile) =>
        File.Exists(errorFeedbackFile) && ErrorFeedbackState.TryDeserialize(File.ReadAllBytes(errorFeedbackFile), out var state).IsValid ? state!.Rounds : -1;

    [Fact]
    public async Task Updates_carry_window_statistics_and_each_verdict_once_and_training_follows_the_adaptation()
    {
        var first = TestFederation.Data(128, seed: 1);
        var windows = new InMemoryDataWindows(first);
        await PublishModelAsync(1, Federation.ModelBytes());
        var (agent, running, stop) = StartAgent(Options(), windows);
        await Eventually.HoldsAsync(() => Updates().Count == 1, "update on v1", 60);

        var u1 = Updates()[0];
        Assert.Equal(0, u1.Cluster);
        Assert.Equal(128, u1.SampleCount);
        Assert.Null(u1.DriftReport);
        Assert.Equal(0, u1.Drift.WindowIndex);
        Assert.Equal(128, u1.Drift.SampleCount);
        Assert.Equal(TestFederation.Classes * TestFederation.Classes, u1.Drift.Prototype.Count);
        Assert.Equal(DriftTestData.PrototypeOf(Federation.ModelBytes(), first), u1.Drift.Prototype.ToArray(), new ToleranceComparer(1e-4f));
        Assert.Empty(u1.Drift.PreviousPrototype);
        Assert.Equal(first.ClassCounts().Select(c => (float)c), u1.Drift.LabelHistogram);
        Assert.Empty(u1.Drift.Clusters);
        Assert.Equal(0, u1.Drift.AssignmentEpoch);

        // Label drift: mostly label 0 now. The verdict travels once; training keeps the old window (128 + new samples).
        var second = DriftTestData.LabelMix(TestFederation.Data(300, seed: 2), [0]);
        windows.Advance(second);
        await PublishModelAsync(2, Federation.ModelBytes(0.01f));
        await Eventually.HoldsAsync(() => Updates().Count == 2, "update on v2", 60);
        var u2 = Updates()[1];
        Assert.Equal(DriftKind.Label, u2.DriftReport.Kind);
        Assert.Equal(1, u2.DriftReport.WindowIndex);
        Assert.Equal((-1, -1), (u2.DriftReport.PreviousCentre, u2.DriftReport.CurrentCentre));
        Assert.Equal(second.Count, u2.DriftReport.SampleCount);
        Assert.Equal(128 + second.Count, u2.SampleCount);
        Assert.Equal(1, u2.Drift.WindowIndex);
        Assert.Equal(TestFederation.Classes * TestFederation.Classes, u2.Drift.PreviousPrototype.Count);
        Assert.Equal(1, agent.Statistics.DriftVerdicts);

        await PublishModelAsync(3, Federation.ModelBytes(0.02f));
        await Eventually.HoldsAsync(() => Updates().Count == 3, "update on v3", 60);
        Assert.Null(Updates()[2].DriftReport);
        Assert.Equal(1, Updates()[2].Drift.WindowIndex);
        await stop.CancelAsync();
        await running;

        // A restart on the same windows neither judges window 1 again nor forgets to keep the old window.
        (agent, running, stop) = StartAgent(Options(), windows);
        await PublishModelAsync(4, Federation.ModelBytes(0.03f));
        await Eventually.HoldsAsync(() => Updates().Count == 4, "update on v4 after the restart", 60);
        Assert.Null(Updates()[3].DriftReport);
        Assert.Equal(128 + second.Count, Updates()[3].SampleCount);
        Assert.Equal(0, agent.Statistics.DriftVerdicts);
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task Real_drift_against_the_assigned_centres_is_reported_and_the_old_window_dropped()
    {
        var reference = DriftTestData.Trained(Federation.ModelBytes(), TestFederation.Data(600, seed: 40));
        var old = TestFederation.Data(128, seed: 1);
        var windows = new InMemoryDataWindows(old);
        // Centres: cluster 3 = the device's concept, cluster 7 = the relabelled one; the device trains cluster 0 only.
        await PublishAssignmentAsync(DriftTestData.Assignment(1, [(0, 1f)],
            [(3, DriftTestData.PrototypeOf(reference, old)), (7, DriftTestData.PrototypeOf(reference, DriftTestData.Relabelled(old)))]));
        await PublishModelAsync(1, reference);
        var judged = new List<DriftObservation>();
        var (agent, running, stop) = StartAgent(Options(), windows);
        agent.DriftJudged += judged.Add;
        await Eventually.HoldsAsync(() => Updates().Count == 1, "update on v1", 60);

        var relabelled = DriftTestData.Relabelled(TestFederation.Data(100, seed: 2));
        windows.Advance(relabelled);
        await PublishModelAsync(2, reference);
        await Eventually.HoldsAsync(() => Updates().Count == 2, "update on v2", 60);
        var u2 = Updates()[1];
        Assert.Equal(DriftKind.Real, u2.DriftReport.Kind);
        Assert.Equal((3, 7), (u2.DriftReport.PreviousCentre, u2.DriftReport.CurrentCentre));
        Assert.Equal(100, u2.SampleCount); // real drift: the old window is dropped
        Assert.Equal([0], u2.Drift.Clusters);
        Assert.Equal(relabelled.ClassCounts().Select(c => (float)c), u2.Drift.ClusterLabelWeights);
        Assert.Equal(FedEdge.Drift.DriftClass.Real, Assert.Single(judged).Assessment!.Class);
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task Without_drift_monitoring_windows_train_on_the_current_data_and_updates_carry_no_statistics()
    {
        var windows = new InMemoryDataWindows(TestFederation.Data(64, seed: 1));
        await PublishModelAsync(1, Federation.ModelBytes());
        var (_, running, stop) = StartAgent(Options(drift: false), windows);
        await Eventually.HoldsAsync(() => Updates().Count == 1, "update on v1", 60);
        windows.Advance(TestFederation.Data(80, seed: 2));
        await PublishModelAsync(2, Federation.ModelBytes(0.01f));
        await Eventually.HoldsAsync(() => Updates().Count == 2, "update on v2", 60);
        Assert.All(Updates(), u => Assert.Null(u.Drift));
        Assert.All(Updates(), u => Assert.Null(u.DriftReport));
        Assert.Equal([64L, 80L], Updates().Select(u => u.SampleCount));
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task An_assigned_device_trains_its_cluster_models_on_the_samples_that_drew_them()
    {
        var concept = await PublishTwoConceptClustersAsync();
        var data = TestFederation.Data(128, seed: 1);
        var assignment = DriftTestData.Assignment(1, [(1, 0.5f), (2, 0.5f)],
            [(1, DriftTestData.PrototypeOf(Federation.ModelBytes(), data)), (2, DriftTestData.PrototypeOf(Federation.ModelBytes(), DriftTestData.Relabelled(data)))]);
        await PublishAssignmentAsync(assignment);

        var (agent, running, stop) = StartAgent(Options(), new InMemoryDataWindows(data));
        // One soft assignment per pass: the samples of cluster 1 and cluster 2 partition the device's data (cluster 2's
        // update exists only if some sample drew it).
        await Eventually.HoldsAsync(() => Updates().Where(u => u.Cluster > 0).Sum(u => u.SampleCount) == data.Count, "the clusters' updates, covering every sample", 60);
        await Eventually.HoldsAsync(() => Updates().Any(u => u.Cluster == 0), "update of the reference", 60);

        var updates = Updates();
        // Cluster 0, the reference, is trained by every device on all its data, besides the assigned clusters.
        var reference = updates.Single(u => u.Cluster == 0);
        Assert.Equal((1L, 128L), (reference.BaseModelVersion, reference.SampleCount));
        var mine = updates.Single(u => u.Cluster == 1);
        Assert.Equal(4, mine.BaseModelVersion);
        Assert.True(mine.SampleCount >= 0.85 * data.Count, $"{mine.SampleCount} samples drew cluster 1");
        Assert.All(updates.Where(u => u.Cluster == 2), u => Assert.True(u.SampleCount <= 0.15 * data.Count));
        Assert.Equal([1, 2], mine.Drift.Clusters);
        Assert.Equal(1, mine.Drift.AssignmentEpoch);
        Assert.Equal(2 * TestFederation.Classes, mine.Drift.ClusterLabelWeights.Count);
        Assert.True(mine.Drift.ClusterLabelWeights.Take(TestFederation.Classes).Sum() >= 0.85 * data.Count);

        // A new version of cluster 1 alone trains cluster 1 again, with its own error-feedback memory.
        await PublishModelAsync(5, concept, cluster: 1);
        await Eventually.HoldsAsync(() => Updates().Count(u => u.Cluster == 1) == 2, "second update of cluster 1", 60);
        // The memory is saved just after the update is queued, so the sender may publish first: wait for the save.
        var clusterMemory = Path.Combine(Dir.Combine("state"), "error-feedback-cluster-1.bin");
        var referenceMemory = Path.Combine(Dir.Combine("state"), EdgeAgent.ErrorFeedbackFileName);
        await Eventually.HoldsAsync(() => RoundsOf(clusterMemory) == 2, "cluster 1's memory saved after its second round", 30);
        Assert.Equal(1, RoundsOf(referenceMemory));
        await stop.CancelAsync();
        await running;

        // After a restart the stored assignment and models are used again; nothing is trained twice. A new version of
        // cluster 1 is the signal: the outbox sends in order, so anything trained again would arrive before its update.
        var before = Updates().Count;
        (agent, running, stop) = StartAgent(Options(), new InMemoryDataWindows(data));
        await agent.Started;
        await PublishModelAsync(6, concept, cluster: 1);
        await Eventually.HoldsAsync(() => Updates().Count(u => u.Cluster == 1) == 3, "the update of cluster 1 v6 after the restart", 60);
        Assert.Equal(before + 1, Updates().Count);
        Assert.Equal(6, Updates()[^1].BaseModelVersion);
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task A_cluster_version_no_sample_drew_gets_a_signed_decline()
    {
        await PublishTwoConceptClustersAsync();
        var data = TestFederation.Data(64, seed: 1);
        // Cluster 2 fits none of the device's samples and starts with prior 0.001: no sample draws it.
        await PublishAssignmentAsync(DriftTestData.Assignment(1, [(1, 0.999f), (2, 0.001f)], []));

        var (agent, running, stop) = StartAgent(Options(), new InMemoryDataWindows(data));
        await Eventually.HoldsAsync(() => Updates().Count(u => u.Cluster > 0) == 2, "the update of cluster 1 and the decline of cluster 2", 60);

        var updates = Updates();
        Assert.Equal(data.Count, updates.Single(u => u.Cluster == 1).SampleCount);
        var decline = updates.Single(u => u.Cluster == 2);
        Assert.True(UpdateDeclines.IsDecline(decline));
        Assert.Null(UpdateDeclines.Check(decline));
        Assert.Equal(6, decline.BaseModelVersion);
        Assert.Equal(Federation.ParameterCount, decline.Dimension);
        Assert.Null(decline.DriftReport);
        // Its FedRC weights still travel: P_c(y) in the cloud sums them over the cluster's devices.
        Assert.Equal([1, 2], decline.Drift.Clusters);
        Assert.Equal(2 * TestFederation.Classes, decline.Drift.ClusterLabelWeights.Count);
        Assert.Equal(1, agent.Statistics.DeclinesEnqueued);
        Assert.Equal(2, agent.Statistics.Rounds); // the reference and cluster 1; a decline is no training round

        // Declined once per version: a restart does not decline again.
        await stop.CancelAsync();
        await running;
        var before = Updates().Count;
        (agent, running, stop) = StartAgent(Options(), new InMemoryDataWindows(data));
        await agent.Started;

        // A new epoch with the same priors re-plans the declined version: still no sample, and no second decline
        // (the cloud's round takes one answer per device). The agent's pass with epoch 2 is awaited, then epoch 3's
        // update is the signal: a decline queued by that pass (or after the restart) would have been sent before it.
        await PublishAssignmentAsync(DriftTestData.Assignment(2, [(1, 0.999f), (2, 0.001f)], []));
        await Eventually.HoldsAsync(() => agent.Statistics.PlannedAssignmentEpoch == 2, "a training pass with epoch 2", 30);
        // An epoch that assigns the device to cluster 2 alone: every sample draws it, and the still-current v6 is now
        // trained; the update replaces the decline in the cloud's round.
        await PublishAssignmentAsync(DriftTestData.Assignment(3, [(2, 1f)], []));
        await Eventually.HoldsAsync(() => Updates().Count(u => u.Cluster == 2) == 2, "the update of cluster 2 v6 after the decline", 60);
        Assert.Equal(before + 1, Updates().Count);
        Assert.Equal(0, agent.Statistics.DeclinesEnqueued);
        var replacing = Updates().Last(u => u.Cluster == 2);
        Assert.Equal((6L, (long)data.Count), (replacing.BaseModelVersion, replacing.SampleCount));
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task Forged_assignments_and_cluster_models_replayed_onto_another_topic_are_rejected()
    {
        using var impostor = SigningKeyPair.Generate("cloud");
        await PublishModelAsync(1, Federation.ModelBytes());
        await PublishAssignmentAsync(DriftTestData.Assignment(1, [(1, 1f)], []), impostor);
        var (agent, running, stop) = StartAgent(Options(), new InMemoryDataWindows(TestFederation.Data(64, seed: 1)));
        await Eventually.HoldsAsync(() => Updates().Count == 1, "update on v1", 60);
        Assert.Equal(0, Updates()[0].Cluster); // the forged assignment did not move the device off cluster 0
        await Eventually.HoldsAsync(() => agent.Statistics.ModelMessagesRejected >= 1, "forged assignment rejected");

        // Genuine assignment to cluster 2; cluster 1's signed model replayed onto cluster 2's topic is not trained.
        var rejected = agent.Statistics.ModelMessagesRejected;
        await PublishAssignmentAsync(DriftTestData.Assignment(2, [(2, 1f)], []));
        await PublishModelAsync(7, Federation.ModelBytes(0.5f), cluster: 2, announcedCluster: 1);
        await Eventually.HoldsAsync(() => agent.Statistics.ModelMessagesRejected > rejected, "replayed announcement rejected");
        await PublishModelAsync(8, Federation.ModelBytes(0.1f), cluster: 2);
        await Eventually.HoldsAsync(() => Updates().Any(u => u.Cluster == 2), "update of cluster 2", 60);
        Assert.Equal(8, Updates().Single(u => u.Cluster == 2).BaseModelVersion);
        Assert.Equal(64, Updates().Single(u => u.Cluster == 2).SampleCount); // one cluster: every sample
        await stop.CancelAsync();
        await running;
    }

    private sealed class ToleranceComparer(float tolerance) : IEqualityComparer<float>
    {
        public bool Equals(float x, float y) => MathF.Abs(x - y) <= tolerance;

        public int GetHashCode(float obj) => 0;
    }
}
