using System.Buffers;
using System.Collections.Concurrent;
using FedEdge.Compression;
using FedEdge.Edge.Models;
using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Tests.Brokers;
using FedEdge.Edge.Training;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;

namespace FedEdge.Edge.Tests.Agent;

/// <summary>The whole agent against the embedded broker, with the test playing the cloud.</summary>
public sealed class EdgeAgentTests : AgentOverBrokerTest
{
    private readonly CapturingTransform _captured = new();

    private EdgeAgentOptions Options(string? codec = null, int maxFrameBytes = 256 * 1024) => new()
    {
        StateDirectory = Dir.Combine("state"),
        Broker = Broker.Address.ToString(),
        Training = new EdgeTrainingOptions { LocalEpochs = 2, BatchSize = 16, LearningRate = 0.1f, Threads = 1, Seed = 3 },
        Compression = new EdgeCompressionOptions { Codec = codec, ErrorFeedback = "ef14", MaxFrameBytes = maxFrameBytes },
        Mqtt = new EdgeMqttOptions { ReconnectMinDelay = TimeSpan.FromMilliseconds(50), ReconnectMaxDelay = TimeSpan.FromMilliseconds(500), KeepAlive = TimeSpan.FromSeconds(5) },
        Outbox = new EdgeOutboxOptions { Fsync = false },
    };

    private (EdgeAgent Agent, Task Running, CancellationTokenSource Stop) StartAgent(EdgeAgentOptions options)
    {
        var agent = new EdgeAgent(options, Federation.Identity(), new EdgeLocalData(TestFederation.Data(128, seed: 1), TestFederation.Data(64, seed: 2)), transform: _captured);
        var stop = new CancellationTokenSource();
        return (agent, agent.RunAsync(stop.Token), stop);
    }

    private async Task PublishModelAsync(PublishedModel published)
    {
        foreach (var (topic, payload) in published.Messages())
            await Cloud.PublishAsync(topic, payload, retain: true);
    }

    /// <summary>What the cloud would accept from the device's update topic: reassembled and verified envelopes.</summary>
    private List<VerifiedUpdate> AcceptedUpdates()
    {
        var topic = MqttTopics.Update(TestFederation.Name, Federation.DeviceId);
        var reassembler = new UpdateReassembler(new ReassemblyOptions());
        var verifier = new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = TestFederation.Name }, Federation.DeviceKeys);
        var accepted = new List<VerifiedUpdate>();
        foreach (var (_, t, payload, _) in Broker.Published)
        {
            if (t != topic)
                continue;
            var frame = reassembler.Accept(Federation.DeviceId, payload);
            Assert.NotEqual(FrameOutcome.Rejected, frame.Outcome);
            if (frame.Outcome != FrameOutcome.Complete)
                continue;
            var verified = verifier.Verify(frame.Envelope.Span, Federation.DeviceId, Federation.ParameterCount);
            Assert.True(verified.IsAccepted, verified.ToString());
            accepted.Add(verified.Value);
        }
        return accepted;
    }

    private int UpdateFrames() => Broker.Published.Count(p => p.Topic == MqttTopics.Update(TestFederation.Name, Federation.DeviceId));

    private static float[] Decode(VerifiedUpdate update)
    {
        var values = new float[update.Dimension];
        Assert.True(update.DecodeInto(values).IsValid);
        return values;
    }

    [Fact]
    public async Task Trains_on_each_verified_version_and_sends_signed_compressed_updates_then_resumes_after_restart()
    {
        // v1: the cloud hints sign; the device uses the hint with error feedback.
        await PublishModelAsync(Federation.Publish(1, Federation.ModelBytes(), codecHints: "sign"));
        var (agent, running, stop) = StartAgent(Options());
        await Eventually.HoldsAsync(() => AcceptedUpdates().Count == 1, "update on v1", 60);

        var first = AcceptedUpdates()[0];
        Assert.Equal(1, first.Envelope.BaseModelVersion);
        Assert.Equal("sign", UpdateCodecs.Parse(first.Envelope.Codec).Id);
        Assert.Equal("ef14", first.Envelope.ErrorFeedback);
        Assert.Equal(128, first.Envelope.SampleCount);
        Assert.True(first.Envelope.Metrics.Steps > 0);
        var delta1 = _captured.Deltas[1];
        Assert.Contains(delta1, v => v != 0);
        var sent1 = Decode(first);
        // EF14 starts from e = 0, so the first message is the scaled sign of Δ itself.
        for (var i = 0; i < delta1.Length; i++)
        {
            if (delta1[i] != 0)
                Assert.Equal(delta1[i] > 0, sent1[i] > 0);
        }

        // v2 changes only weights and asks for fp32: no new session; a 10 KB envelope is chunked.
        var framesBefore = UpdateFrames();
        await PublishModelAsync(Federation.Publish(2, Federation.ModelBytes(shift: 0.01f), codecHints: "fp32"));
        await Eventually.HoldsAsync(() => AcceptedUpdates().Count == 2, "update on v2", 60);
        var second = AcceptedUpdates()[1];
        Assert.Equal(2, second.Envelope.BaseModelVersion);
        Assert.Equal(_captured.Deltas[2], Decode(second));
        Assert.Equal(1, agent.Statistics.TrainingSessionBuilds);
        // The round is counted after its progress is saved, which may come just after the sender published it.
        await Eventually.HoldsAsync(() => agent.Statistics.Rounds == 2, "round on v2 completed", 30);

        await stop.CancelAsync();
        await running;
        var status = await Broker.Server.GetRetainedMessageAsync(MqttTopics.Status(TestFederation.Name, Federation.DeviceId));
        var decoded = DeviceStatuses.Decode(status.Payload.ToArray(), TestFederation.Name, Federation.DeviceId);
        Assert.Equal(DeviceState.Offline, decoded.GetValueOrThrow().State);
        Assert.True(File.Exists(Path.Combine(Options().StateDirectory, EdgeAgent.ErrorFeedbackFileName)));

        // Restart on the same state: v2 is restored from disk and not trained again; v3 is.
        var (restarted, running2, stop2) = StartAgent(Options());
        await restarted.Started;
        await restarted.Link!.WaitUntilConnectedAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await PublishModelAsync(Federation.Publish(3, Federation.ModelBytes(shift: 0.02f)));
        // v3's update is the signal: the outbox sends in order, so a second update on v2 would have come before it.
        await Eventually.HoldsAsync(() => AcceptedUpdates().Any(u => u.Envelope.BaseModelVersion == 3), "update on v3", 60);
        Assert.Equal([1L, 2L, 3L], AcceptedUpdates().Select(u => (long)u.Envelope.BaseModelVersion));
        Assert.Equal(3, AcceptedUpdates().Select(u => u.UpdateIdHex).Distinct().Count());
        await stop2.CancelAsync();
        await running2;
    }

    [Fact]
    public async Task Large_updates_are_chunked_and_reassemble_to_the_signed_envelope()
    {
        await PublishModelAsync(Federation.Publish(1, Federation.ModelBytes()));
        var (_, running, stop) = StartAgent(Options(codec: "fp32", maxFrameBytes: 2048));
        await Eventually.HoldsAsync(() => AcceptedUpdates().Count == 1, "chunked update on v1", 60);
        Assert.True(UpdateFrames() >= 5, $"expected a chunked update, saw {UpdateFrames()} frames");
        Assert.Equal(_captured.Deltas[1], Decode(AcceptedUpdates()[0]));
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task Trains_and_queues_while_the_broker_is_down_and_sends_once_it_is_back()
    {
        // The device already holds a verified v1 on disk (from an earlier run) and has not trained on it.
        var published = Federation.Publish(1, Federation.ModelBytes());
        var verifier = new ModelAnnouncementVerifier(TestFederation.Name, new VerificationKeyRing(Federation.CloudKey.VerificationKey));
        new ModelStore(Path.Combine(Options().StateDirectory, EdgeAgent.ModelDirectoryName), verifier, fsync: false)
            .Save(new VerifiedModel(published.Announcement, published.AnnouncementBytes, Federation.ModelBytes()));
        await Cloud.StopAsync();
        await Broker.StopAsync();

        var (agent, running, stop) = StartAgent(Options(codec: "sign"));
        await agent.Started;
        await Eventually.HoldsAsync(() => agent.Statistics.UpdatesEnqueued == 1, "update queued while offline", 60);
        Assert.False(agent.Link!.IsConnected);
        Assert.Equal(1, agent.Outbox!.Count);

        await Broker.StartAsync();
        await Eventually.HoldsAsync(() => AcceptedUpdates().Count == 1 && agent.Outbox.Count == 0, "queued update delivered after reconnect", 30);
        Assert.Equal(1, AcceptedUpdates()[0].Envelope.BaseModelVersion);
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task A_model_signed_by_an_impostor_is_never_trained_on()
    {
        using var impostor = FedEdge.Protocol.SigningKeyPair.Generate("cloud");
        await PublishModelAsync(Federation.Publish(1, Federation.ModelBytes(), impostor));
        var (agent, running, stop) = StartAgent(Options());
        await Eventually.HoldsAsync(() => agent.Statistics.ModelMessagesRejected >= 1, "announcement rejected");

        // The genuine v1 replaces the retained announcement and is used. Its update is the signal that the agent has
        // handled everything published before it: only the genuine model was verified and trained on.
        await PublishModelAsync(Federation.Publish(1, Federation.ModelBytes()));
        await Eventually.HoldsAsync(() => AcceptedUpdates().Count == 1, "update on the genuine v1", 60);
        Assert.Equal(1, agent.Statistics.ModelsVerified);
        await stop.CancelAsync();
        await running;
    }

    /// <summary>Leaves Δ unchanged and keeps a copy per version, to compare with what the cloud decodes.</summary>
    private sealed class CapturingTransform : IUpdateTransform
    {
        public ConcurrentDictionary<long, float[]> Deltas { get; } = new();

        public void Apply(Span<float> delta, long globalVersion) => Deltas[globalVersion] = delta.ToArray();
    }
}
