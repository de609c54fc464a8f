using System.Diagnostics;
using System.Threading.Channels;
using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge.Drift;
using FedEdge.Edge.Identity;
using FedEdge.Edge.Models;
using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Outbox;
using FedEdge.Edge.Training;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using FedEdge.Training;
using Google.Protobuf;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge;

/// <summary>
/// One edge device's federated-learning loop, independent of any host so that a simulator can run many in
/// one process. Lifecycle: open the state directory (outbox, last verified model, error-feedback state,
/// progress); connect (MQTT v5 persistent session, last will); then for every new verified global model
/// version: train E local epochs, Δ = local − global, optional <see cref="IUpdateTransform"/>, compress with
/// error feedback, sign, queue in the durable outbox, which a sender drains whenever the link is up. Training
/// and queueing go on while the link is down. The local data comes in time windows (<see cref="IEdgeDataWindows"/>);
/// with <see cref="EdgeDriftOptions.Enabled"/> the agent runs FedDAA's device side (docs/drift.md, "On the device"):
/// drift statistics and verdicts per window, and training of the cluster models its cloud-signed
/// <see cref="ClusterAssignment"/> lists, each sample going to one cluster by FedRC's soft assignment.
/// </summary>
public sealed partial class EdgeAgent
{
    public const string OutboxDirectoryName = "outbox";
    public const string ModelDirectoryName = "model";
    public const string ErrorFeedbackFileName = "error-feedback.bin";
    public const string ProgressFileName = "agent.json";

    /// <summary>FedMM's control variate V_i (algorithms.md §5), kept like error-feedback memory.</summary>
    public const string ControlVariateFileName = "fedmm-control-variate.bin";
    public const string AssignmentFileName = "cluster-assignment.bin";

    private readonly EdgeAgentOptions _options;
    private readonly EdgeDeviceIdentity _identity;
    private readonly IEdgeDataWindows _windows;
    private readonly IMqttClientFactory _mqtt;
    private readonly TimeProvider _clock;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly IUpdateTransform? _transform;
    private readonly IDeviceSpeed? _speed;
    private readonly TaskScheduler? _trainingScheduler;
    private readonly UpdateEnvelopeSigner _signer;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // (cluster, version) whose training threw: not retried on every later event, only by a newer version.
    private readonly HashSet<(int Cluster, long Version)> _failed = [];
    // Local rounds trained in this run (what a simulated device's speed counts in).
    private int _localRounds;
    private FedMMDevice? _fedmm;
    private FarSignDevice? _farSign;

    /// <summary>An agent on one static data set (one window that never changes).</summary>
    /// <param name="speed">Simulations only: the device's simulated speed and outages (null = this machine's speed).</param>
    /// <param name="trainingScheduler">Where local training and drift statistics run (null = the .NET thread pool; see
    /// <see cref="TrainingWorkerPool"/> for agents that share a process with the cloud).</param>
    public EdgeAgent(EdgeAgentOptions options, EdgeDeviceIdentity identity, EdgeLocalData data, IMqttClientFactory? mqtt = null,
        TimeProvider? clock = null, ILoggerFactory? loggers = null, IUpdateTransform? transform = null,
        IDeviceSpeed? speed = null, TaskScheduler? trainingScheduler = null)
        : this(options, identity, new FixedDataWindow(data), mqtt, clock, loggers, transform, speed, trainingScheduler)
    {
    }

    /// <summary>An agent whose local data arrives in time windows, advanced by the host.</summary>
    /// <param name="speed">Simulations only: the device's simulated speed and outages (null = this machine's speed).</param>
    /// <param name="trainingScheduler">Where local training and drift statistics run (null = the .NET thread pool).</param>
    public EdgeAgent(EdgeAgentOptions options, EdgeDeviceIdentity identity, IEdgeDataWindows windows, IMqttClientFactory? mqtt = null,
        TimeProvider? clock = null, ILoggerFactory? loggers = null, IUpdateTransform? transform = null,
        IDeviceSpeed? speed = null, TaskScheduler? trainingScheduler = null)
    {
        ArgumentNullException.ThrowIfNull(windows);
        _options = options;
        _identity = identity;
        _windows = windows;
        _mqtt = mqtt ?? new MqttNetClientFactory();
        _clock = clock ?? TimeProvider.System;
        _loggers = loggers ?? NullLoggerFactory.Instance;
        _logger = _loggers.CreateLogger<EdgeAgent>();
        _transform = transform;
        _speed = speed;
        // A real device's process holds only its agent, so the thread pool is all its own: no scheduler by default.
        _trainingScheduler = trainingScheduler;
        _signer = new UpdateEnvelopeSigner(identity.SigningKey);
    }

    public string DeviceId => _identity.DeviceId;

    public EdgeAgentStatistics Statistics { get; } = new();

    /// <summary>The MQTT link (available once <see cref="RunAsync"/> has started).</summary>
    public MqttLink? Link { get; private set; }

    /// <summary>The outbox (available once <see cref="RunAsync"/> has started).</summary>
    public UpdateOutbox? Outbox { get; private set; }

    /// <summary>The outbox sender (available once <see cref="RunAsync"/> has started): bytes and updates acknowledged.</summary>
    public OutboxSender? Sender { get; private set; }

    /// <summary>Completes when the state is open and the link is starting (the properties above are set).</summary>
    public Task Started => _started.Task;

    /// <summary>Raised after every local round (on the agent's thread; keep handlers short).</summary>
    public event Action<EdgeRoundReport>? RoundCompleted;

    /// <summary>Raised with every drift verdict (a new data window judged; on the agent's thread).</summary>
    public event Action<DriftObservation>? DriftJudged;

    /// <summary>Runs until cancelled. Throws only for configuration errors (bad data, unusable state directory).</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var state = Path.GetFullPath(_options.StateDirectory);
        Directory.CreateDirectory(state);
        var federation = _identity.Federation;
        var fsync = _options.Outbox.Fsync;
        using var outbox = new UpdateOutbox(new OutboxOptions
        {
            Directory = Path.Combine(state, OutboxDirectoryName),
            MaxItems = _options.Outbox.MaxItems,
            MaxBytes = _options.Outbox.MaxBytes,
            Fsync = fsync,
        }, _loggers.CreateLogger<UpdateOutbox>(), _clock);
        var progressPath = Path.Combine(state, ProgressFileName);
        var progress = AgentProgress.Load(progressPath);

        await using var link = new MqttLink(LinkOptions(), _mqtt, _loggers.CreateLogger<MqttLink>(), _clock);
        var streams = new ModelStreams(state, federation, new ModelAnnouncementVerifier(federation, new VerificationKeyRing(_identity.CloudKey)),
            link, fsync, _loggers, Statistics);
        var reference = streams.Open(0);
        if (reference.Latest is { } stored)
            LogRestoredModel(stored.Version, progress.LastTrainedVersion);
        var maxFrame = _options.Compression.MaxFrameBytes;
        var sender = new OutboxSender(outbox, link, MqttTopics.Update(federation, _identity.DeviceId),
            item => [.. UpdateFramer.Frame(item.Payload.Span, Convert.FromHexString(item.UpdateId), maxFrame).Select(f => (ReadOnlyMemory<byte>)f)],
            _loggers.CreateLogger<OutboxSender>(), _clock);
        var windows = _windows.Poll();
        using var trainer = new LocalTrainer(_options.Training, windows.Current.Train, windows.Current.Test, _options.Data.MaxEvaluationSamples, _loggers.CreateLogger<LocalTrainer>());
        using var drift = _options.Drift.Enabled ? new DeviceDrift(_options.Drift, _identity, state, fsync, _loggers) : null;
        (Outbox, Link, Sender) = (outbox, link, sender);
        drift?.Monitor.Restore(progress.DriftJudgedWindow, progress.DriftTrainingWindow);
        if (drift?.Assignment is { } restoredAssignment)
            await ApplyAssignmentAsync(restoredAssignment, streams, link, cancellationToken).ConfigureAwait(false);

        var events = Channel.CreateUnbounded<AgentEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await link.StartAsync(stopping.Token).ConfigureAwait(false);
        var sending = sender.RunAsync(stopping.Token);
        var receiving = RouteInboundAsync(link, streams, drift, events.Writer, stopping.Token);
        _started.TrySetResult();
        LogStarted(_identity.DeviceId, federation, state, windows.Current.Train.Count);
        try
        {
            while (true)
            {
                progress = await TrainDueAsync(streams, drift, trainer, outbox, link, progress, progressPath, stopping.Token).ConfigureAwait(false);
                var next = await events.Reader.ReadAsync(stopping.Token).ConfigureAwait(false);
                do
                {
                    await HandleAsync(next, streams, drift, link, stopping.Token).ConfigureAwait(false);
                }
                while (events.Reader.TryRead(out next));
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            await stopping.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(sending, receiving).ConfigureAwait(false);
            await link.StopAsync(CancellationToken.None).ConfigureAwait(false);
            _started.TrySetResult();
        }
    }

    /// <summary>
    /// Trains every followed model stream whose latest verified version was not trained yet: cluster 0 (the federation's
    /// model, FedDAA's reference, trained by every device on all its training data) and, once the device is assigned,
    /// the clusters of its assignment, each on the samples that drew it in one FedRC soft assignment per pass. With drift
    /// monitoring, the window statistics (and a verdict when the window changed) are computed first, once per pass, and
    /// travel with every update of the pass; the verdict only with the first one queued.
    /// </summary>
    private async Task<AgentProgress> TrainDueAsync(ModelStreams streams, DeviceDrift? drift, LocalTrainer trainer, UpdateOutbox outbox,
        MqttLink link, AgentProgress progress, string progressPath, CancellationToken cancellationToken)
    {
        var assignment = drift?.Assignment;
        Statistics.PassPlanned(assignment?.Epoch ?? -1);
        int[] assigned = assignment is null ? [] : [.. assignment.Clusters.Select(c => c.Cluster).Distinct()];
        var due = assigned.Prepend(0).Distinct().Select(streams.Find)
            .Where(s => s?.Latest is { } m && !_failed.Contains((s.Cluster, m.Version))
                && (m.Version > progress.LastTrained(s.Cluster) || DeclinedInOlderEpoch(progress, s.Cluster, m.Version, assignment)))
            .Select(s => s!).ToList();
        if (due.Count == 0)
            return progress;
        // The soft assignment weighs every assigned cluster's loss: planning without one would hand its samples to the
        // others. Its retained model comes with the subscription; the assigned clusters train once all are here.
        var missing = assigned.Where(c => streams.Find(c)?.Latest is null).ToArray();
        if (missing.Length > 0)
        {
            LogWaitingForClusterModels(string.Join(", ", missing));
            due.RemoveAll(s => s.Cluster != 0 || assigned.Contains(0));
            if (due.Count == 0)
                return progress;
        }
        var windows = _windows.Poll();
        var reference = streams.Find(0)?.Latest;
        var data = windows.Current.Train;
        var (observation, plan) = await OnTrainingThreadAsync(() =>
        {
            DriftObservation? observed = null;
            if (drift is not null && reference is not null)
            {
                try
                {
                    observed = drift.Monitor.Observe(reference, windows, assignment, _clock.GetUtcNow());
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Statistics are an add-on to training: a reference model they cannot run on must not stop the rounds.
                    LogDriftStatisticsFailed(e, reference.Version);
                }
            }
            data = windows.TrainingData(drift?.Monitor.TrainingWindow ?? TrainingWindow.CurrentOnly);
            ClusterPlan? planned = null;
            if (assignment is not null && missing.Length == 0 && assigned.Length > 0)
            {
                try
                {
                    planned = PlanClusters(drift!, assignment, streams, data, windows.Current.Index);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogClusterPlanFailed(e, assignment.Epoch);
                    due.RemoveAll(s => assigned.Contains(s.Cluster));
                }
            }
            return (observed, planned);
        }, cancellationToken).ConfigureAwait(false);
        if (drift is not null && drift.Monitor.JudgedWindow != progress.DriftJudgedWindow)
        {
            progress = progress with { DriftJudgedWindow = drift.Monitor.JudgedWindow, DriftTrainingWindow = drift.Monitor.TrainingWindow };
            progress.Save(progressPath, _options.Outbox.Fsync);
        }
        if (observation?.Assessment is not null)
        {
            Statistics.DriftJudged();
            DriftJudged?.Invoke(observation);
        }
        var test = windows.Current.Test;
        foreach (var stream in due)
        {
            var model = stream.Latest!;
            if (outbox.Count >= _options.Outbox.MaxItems)
            {
                Statistics.UpdateRefused();
                LogSkippedOutboxFull(model.Version, outbox.Count);
                continue;
            }
            // Cluster 0 not among the assigned clusters is the reference every device trains on all its data.
            var samples = plan is not null && assigned.Contains(model.Cluster) ? plan.SamplesOf(model.Cluster) : null;
            if (samples is { Length: 0 })
            {
                // No sample drew this cluster: nothing to train, but the cloud counts this device in the cluster's round,
                // so it gets a signed decline and need not wait for its deadline (once per version: the cloud's round
                // takes one answer per device, so a re-plan in a newer epoch that again draws nothing sends nothing).
                // (Cluster 0, the reference, is never declined: the cloud does not assign it as a cluster.)
                if (model.Version > progress.LastTrained(model.Cluster) && model.Cluster > 0)
                {
                    LogNoSamplesForCluster(model.Cluster, model.Version);
                    await PublishDeclineAsync(model, outbox, ClusterStatistics(observation, plan, assignment), cancellationToken).ConfigureAwait(false);
                }
                progress = model.Cluster > 0
                    ? progress.Declined(model.Cluster, model.Version, assignment!.Epoch)
                    : progress.Trained(model.Cluster, model.Version, counted: false);
                progress.Save(progressPath, _options.Outbox.Fsync);
                continue;
            }
            LocalRoundResult trained;
            try
            {
                var local = samples is null || samples.Length == data.Count ? data : data.Subset(samples);
                trained = await OnTrainingThreadAsync(() => Contribute(model, trainer, local, test, cancellationToken), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // A model this device cannot train (wrong input shape, unsupported operator) must not stop
                // the agent: the next version may be fine, and the link keeps reporting the device online.
                _failed.Add((model.Cluster, model.Version));
                LogTrainingFailed(e, model.Cluster, model.Version);
                continue;
            }
            Statistics.TrainingSessionBuilds = trainer.SessionBuilds;
            if (_speed is not null)
                await SimulateDeviceTimeAsync(_speed.AfterTraining(++_localRounds, trained.Duration), link, model.Version, cancellationToken).ConfigureAwait(false);
            var statistics = ClusterStatistics(observation, plan, assignment);
            var report = drift?.Monitor.PendingReport;
            var round = await PublishRoundAsync(model, trained, stream, outbox, statistics, report, cancellationToken).ConfigureAwait(false);
            if (round.UpdateId is not null && report is not null)
                drift!.Monitor.ReportSent();
            progress = progress.Trained(model.Cluster, model.Version);
            progress.Save(progressPath, _options.Outbox.Fsync);
            Statistics.RoundCompleted();
            RoundCompleted?.Invoke(round);
        }
        return progress;
    }

    /// <summary>
    /// What the federation's announced algorithm asks of this device for <paramref name="model"/>: FedAvg trains locally
    /// (Δ); FedMM computes its surrogate statistic against the published Ŝ (no training); FAR-SIGN answers signed
    /// directional derivatives along the version's directions.
    /// </summary>
    private LocalRoundResult Contribute(VerifiedModel model, LocalTrainer trainer, Dataset local, Dataset? test, CancellationToken cancellationToken)
    {
        var algorithm = model.Algorithm;
        if (algorithm.Name == AlgorithmSpec.FedAvg)
            return trainer.Train(model, local, test, cancellationToken);
        var stopwatch = Stopwatch.StartNew();
        var objective = trainer.Objective(model, local);
        var parameters = trainer.GlobalParameters.ToArray();
        switch (algorithm.Name)
        {
            case AlgorithmSpec.FedMM when !FedMMDevice.IsActive(model, _identity.DeviceId):
                // Not drawn for this version: nothing to send, and the control variate stays where the server's V has it.
                return new LocalRoundResult(model.Version, [], local.Count, double.NaN, double.NaN, 0, stopwatch.Elapsed) { Kind = RoundContribution.Statistics };
            case AlgorithmSpec.FedMM:
                _fedmm ??= new FedMMDevice(Path.Combine(_options.StateDirectory, ControlVariateFileName), _options.Outbox.Fsync, _logger);
                var alpha = algorithm.Number("alpha", double.NaN);
                if (!(alpha is > 0 and <= 1))
                    throw new InvalidDataException($"FedMM model v{model.Version} announces no control-variate step alpha in (0, 1].");
                var message = _fedmm.Compute(model, objective, parameters, alpha);
                return new LocalRoundResult(model.Version, message.Difference, local.Count, message.Loss, double.NaN, 1, stopwatch.Elapsed)
                {
                    Kind = RoundContribution.Statistics,
                    Bootstrap = message.Bootstrap,
                };
            case AlgorithmSpec.FarSign:
                _farSign ??= new FarSignDevice(_identity.DeviceId);
                var (answers, loss) = _farSign.Answer(model, objective, parameters, _options.Training.Seed);
                return new LocalRoundResult(model.Version, answers, local.Count, loss, double.NaN, 1, stopwatch.Elapsed) { Kind = RoundContribution.Answers };
            default:
                throw new NotSupportedException($"Model v{model.Version} asks for algorithm '{algorithm}', which this agent does not know; update the agent.");
        }
    }

    /// <summary>
    /// CPU-heavy work on the training scheduler, else on the thread pool as <c>Task.Run</c>.
    /// Its continuations run asynchronously so that what follows (compression, signing, an attacker's collusion wait) goes
    /// to the thread pool and never holds one of the few training threads.
    /// </summary>
    private Task<T> OnTrainingThreadAsync<T>(Func<T> work, CancellationToken cancellationToken) => _trainingScheduler is null
        ? Task.Run(work, cancellationToken)
        : Task.Factory.StartNew(work, cancellationToken, TaskCreationOptions.DenyChildAttach | TaskCreationOptions.RunContinuationsAsynchronously, _trainingScheduler);

    /// <summary>
    /// A simulated device's extra training time, then its outage: the link goes down (the cloud sees it offline) and
    /// the trained update is held back until it is up again.
    /// </summary>
    private async Task SimulateDeviceTimeAsync(DeviceRoundTiming timing, MqttLink link, long version, CancellationToken cancellationToken)
    {
        if (timing.Delay > TimeSpan.Zero)
            await Task.Delay(timing.Delay, _clock, cancellationToken).ConfigureAwait(false);
        if (timing.Outage <= TimeSpan.Zero)
            return;
        LogOutage(version, timing.Outage.TotalSeconds);
        Statistics.OutageStarted();
        await link.SuspendAsync(cancellationToken).ConfigureAwait(false);
        await Task.Delay(timing.Outage, _clock, cancellationToken).ConfigureAwait(false);
        link.Resume();
    }

    /// <summary>
    /// A cluster version the device declined under an older assignment epoch: the new epoch's priors may now draw
    /// samples for it, and an update replaces the decline in the cloud's round (the round waits for it otherwise).
    /// </summary>
    private static bool DeclinedInOlderEpoch(AgentProgress progress, int cluster, long version, ClusterAssignment? assignment) =>
        assignment is not null && version == progress.LastTrained(cluster) && progress.DeclinedInEpoch(cluster) is long epoch && epoch < assignment.Epoch;

    /// <summary>The window's drift statistics with the pass's FedRC cluster × label weights (null without drift monitoring).</summary>
    private static DriftStatistics? ClusterStatistics(DriftObservation? observation, ClusterPlan? plan, ClusterAssignment? assignment)
    {
        var statistics = observation is null ? null : DriftMonitor.ToMessage(observation);
        if (statistics is not null && plan is not null)
        {
            statistics.Clusters.AddRange(plan.Clusters);
            statistics.ClusterLabelWeights.AddRange(plan.Assignment.LabelHistogram);
            statistics.AssignmentEpoch = assignment!.Epoch;
        }
        return statistics;
    }

    /// <summary>FedRC soft assignment over the assigned clusters (all held), one draw per sample for the whole pass.</summary>
    private ClusterPlan PlanClusters(DeviceDrift drift, ClusterAssignment assignment, ModelStreams streams, Dataset data, long window)
    {
        var held = assignment.Clusters.Select(c => c.Cluster).Distinct().Select(c => streams.Find(c)!.Latest!).ToList();
        var labels = assignment.LabelCount > 0 ? assignment.LabelCount : drift.Forward.Load(held[0]);
        // Reproducible per device seed, window and model versions; different from pass to pass.
        var seed = unchecked((_options.Training.Seed * 1_000_003) + (int)(window * 7_919) + held.Sum(m => (int)m.Version * 31 + m.Cluster));
        return drift.Planner.Plan(assignment, held, data, labels, new Random(seed));
    }

    private async Task HandleAsync(AgentEvent next, ModelStreams streams, DeviceDrift? drift, MqttLink link, CancellationToken cancellationToken)
    {
        switch (next)
        {
            case ModelArrived arrived when streams.Find(arrived.Model.Cluster) is { } stream:
                Statistics.ModelVerified();
                if (stream.Latest is null || arrived.Model.Version > stream.Latest.Version)
                {
                    stream.Latest = arrived.Model;
                    stream.Store.Save(arrived.Model);
                }
                break;
            case AssignmentArrived assigned when drift is not null:
                if (drift.Accept(assigned.Assignment, assigned.Bytes))
                    await ApplyAssignmentAsync(assigned.Assignment, streams, link, cancellationToken).ConfigureAwait(false);
                break;
        }
    }

    /// <summary>Follows the model streams of <paramref name="assignment"/> (and cluster 0, the reference) and no others.</summary>
    private async Task ApplyAssignmentAsync(ClusterAssignment assignment, ModelStreams streams, MqttLink link, CancellationToken cancellationToken)
    {
        var wanted = assignment.Clusters.Select(c => c.Cluster).Append(0).ToHashSet();
        foreach (var cluster in wanted.Where(c => streams.Find(c) is null))
        {
            streams.Open(cluster);
            await link.SubscribeAsync(MqttTopics.ClusterModel(_identity.Federation, cluster), cancellationToken).ConfigureAwait(false);
        }
        foreach (var stream in streams.All.Where(s => !wanted.Contains(s.Cluster)).ToList())
        {
            streams.Close(stream.Cluster);
            await stream.Receiver.AbandonAsync(cancellationToken).ConfigureAwait(false);
            await link.UnsubscribeAsync(stream.Receiver.AnnouncementTopic, cancellationToken).ConfigureAwait(false);
        }
        LogAssignment(assignment.Epoch, string.Join(", ", assignment.Clusters.Select(c => $"{c.Cluster} (prior {c.Prior:F2})")), assignment.CentreClusters.Count);
    }

    /// <summary>
    /// Reads the link's inbound messages: the device's cluster assignment (verified here) and every followed model
    /// stream's announcements and chunks (verified by its <see cref="ModelReceiver"/>); verified results go to the agent loop.
    /// </summary>
    private async Task RouteInboundAsync(MqttLink link, ModelStreams streams, DeviceDrift? drift, ChannelWriter<AgentEvent> events, CancellationToken cancellationToken)
    {
        var assignmentTopic = MqttTopics.ClusterAssignment(_identity.Federation, _identity.DeviceId);
        try
        {
            await foreach (var message in link.Inbound.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                if (message.Topic == assignmentTopic)
                {
                    if (drift is null)
                        continue;
                    var verified = drift.Verifier.Verify(message.Payload.Span);
                    if (verified.IsAccepted)
                    {
                        events.TryWrite(new AssignmentArrived(verified.Value, message.Payload.ToArray()));
                    }
                    else
                    {
                        Statistics.ModelMessageRejected();
                        LogAssignmentRejected(verified.Reason.ToString(), verified.Message ?? "");
                    }
                    continue;
                }
                if (streams.All.FirstOrDefault(s => s.Receiver.Handles(message.Topic)) is not { } stream)
                    continue;
                await stream.Receiver.HandleAsync(message, cancellationToken).ConfigureAwait(false);
                while (stream.Receiver.Verified.TryRead(out var model))
                    events.TryWrite(new ModelArrived(model));
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Compress (with the stream's error feedback), sign and queue one round's update.</summary>
    private async Task<EdgeRoundReport> PublishRoundAsync(VerifiedModel model, LocalRoundResult trained, ModelStream stream, UpdateOutbox outbox,
        DriftStatistics? statistics, DriftReport? driftReport, CancellationToken cancellationToken)
    {
        if (!double.IsFinite(trained.Loss))
        {
            Statistics.UpdateRefused();
            return Report(trained, model.Cluster, null, 0, 0);
        }
        var delta = trained.Delta;
        _transform?.Apply(delta, model.Version);
        if (trained.Kind != RoundContribution.Update)
            return await PublishContributionAsync(model, trained, outbox, statistics, driftReport, cancellationToken).ConfigureAwait(false);
        var codec = UpdateCodecs.Parse(CodecSpec(model));
        var kind = ErrorFeedbackCompressor.ParseKind(_options.Compression.ErrorFeedback);
        if (stream.ErrorFeedback is not { } errorFeedback || errorFeedback.Kind != kind || errorFeedback.Codec.Spec != codec.Spec || errorFeedback.Dimension != delta.Length)
            stream.ErrorFeedback = errorFeedback = stream.ErrorFeedbackStore.LoadOrCreate(kind, codec, delta.Length, _options.Compression.EControlEta);

        // If the update cannot be queued, the memory must not count it as sent: keep a copy to roll back to.
        var before = ErrorFeedbackState.Serialize(errorFeedback);
        var payload = errorFeedback.Compress(delta);
        var envelope = Envelope(model, trained, codec, payload, errorFeedback.Name, statistics, driftReport);
        var (updateIdHex, signedLength) = await SignAndQueueAsync(envelope, outbox, cancellationToken).ConfigureAwait(false);
        if (updateIdHex is null)
        {
            ErrorFeedbackState.TryDeserialize(before, out var restored);
            stream.ErrorFeedback = restored;
            return Report(trained, model.Cluster, null, payload.Length, signedLength);
        }
        // Queued first, then the memory: a crash in between leaves the memory one round behind, which re-sends
        // part of one message later instead of losing it.
        stream.ErrorFeedbackStore.Save(errorFeedback);
        Statistics.UpdateEnqueued();
        LogRound(model.Cluster, model.Version, trained.Loss, trained.Accuracy, trained.Steps, trained.SampleCount, trained.Duration.TotalSeconds, codec.Spec, errorFeedback.Name, payload.Length, updateIdHex);
        return Report(trained, model.Cluster, updateIdHex, payload.Length, signedLength);
    }

    /// <summary>
    /// FedMM statistics or FAR-SIGN answers: encoded without error feedback (FedMM's control variate plays its part; an
    /// answer is one bit through the scaled-sign codec, scale 1), signed and queued; then FedMM's V_i moves by α·Q(Δ_i),
    /// with Q(Δ_i) decoded exactly as the server will decode it.
    /// </summary>
    private async Task<EdgeRoundReport> PublishContributionAsync(VerifiedModel model, LocalRoundResult trained, UpdateOutbox outbox,
        DriftStatistics? statistics, DriftReport? driftReport, CancellationToken cancellationToken)
    {
        if (trained.Delta.Length == 0)
        {
            LogNotActive(model.Version);
            return Report(trained, model.Cluster, null, 0, 0);
        }
        // FedMM's bootstrap answer is S_i itself, which sets Ŝ₀: exact (fp32), whatever the federation's codec.
        IUpdateCodec codec = trained.Kind == RoundContribution.Answers ? new SignCodec()
            : trained.Bootstrap ? new Fp32Codec()
            : UpdateCodecs.Parse(CodecSpec(model));
        var payload = codec.Encode(trained.Delta);
        var envelope = Envelope(model, trained, codec, payload, "none", statistics, driftReport);
        var (updateIdHex, signedLength) = await SignAndQueueAsync(envelope, outbox, cancellationToken).ConfigureAwait(false);
        if (updateIdHex is null)
            return Report(trained, model.Cluster, null, payload.Length, signedLength);
        if (trained.Kind == RoundContribution.Statistics && !trained.Bootstrap)
        {
            var decoded = new float[trained.Delta.Length];
            codec.Decode(payload, decoded);
            _fedmm!.Commit(decoded);
        }
        Statistics.UpdateEnqueued();
        LogContribution(trained.Kind, model.Version, trained.Loss, trained.SampleCount, trained.Duration.TotalSeconds, codec.Spec, payload.Length, updateIdHex);
        return Report(trained, model.Cluster, updateIdHex, payload.Length, signedLength);
    }

    /// <summary>The unsigned envelope of one round's contribution (a new update id).</summary>
    private UpdateEnvelope Envelope(VerifiedModel model, LocalRoundResult trained, IUpdateCodec codec, byte[] payload, string errorFeedback,
        DriftStatistics? statistics, DriftReport? driftReport) => new()
        {
            Federation = _identity.Federation,
            DeviceId = _identity.DeviceId,
            BaseModelVersion = model.Version,
            UpdateId = UpdateEnvelopeSigner.NewUpdateId(),
            SampleCount = trained.SampleCount,
            Codec = codec.Spec,
            Dimension = trained.Delta.Length,
            Payload = ByteString.CopyFrom(payload),
            ErrorFeedback = errorFeedback,
            Cluster = model.Cluster,
            Drift = statistics,
            DriftReport = driftReport,
            Metrics = new TrainingMetrics
            {
                Loss = double.IsFinite(trained.Loss) ? trained.Loss : 0,
                Accuracy = double.IsFinite(trained.Accuracy) ? trained.Accuracy : 0,
                Steps = trained.Steps,
                DurationMs = (long)trained.Duration.TotalMilliseconds,
            },
        };

    /// <summary>
    /// Signs an envelope and queues it in the outbox; the update id (hex) and the signed size, or a null id when the
    /// outbox refused it (full disk or outbox: counted and logged, the caller rolls back what it must).
    /// </summary>
    private async Task<(string? UpdateId, int SignedLength)> SignAndQueueAsync(UpdateEnvelope envelope, UpdateOutbox outbox, CancellationToken cancellationToken)
    {
        var signed = _signer.Sign(envelope, _clock);
        var updateIdHex = Convert.ToHexString(envelope.UpdateId.Span);
        try
        {
            await outbox.EnqueueAsync(updateIdHex, signed, cancellationToken).ConfigureAwait(false);
            return (updateIdHex, signed.Length);
        }
        catch (Exception e) when (e is OutboxFullException or IOException)
        {
            Statistics.UpdateRefused();
            LogNotQueued(envelope.BaseModelVersion, e.Message);
            return (null, signed.Length);
        }
    }

    /// <summary>The configured codec, else the cloud's first hint for the model, else fp32.</summary>
    private string CodecSpec(VerifiedModel model) => string.IsNullOrWhiteSpace(_options.Compression.Codec)
        ? model.Announcement.CodecHints.FirstOrDefault() ?? "fp32"
        : _options.Compression.Codec;

    /// <summary>
    /// Signs and queues a decline of a cluster model version (<see cref="UpdateDeclines"/>): same outbox, topic and
    /// de-duplication as an update; it carries the window's drift statistics (its FedRC weights count towards P_c(y)).
    /// </summary>
    private async Task PublishDeclineAsync(VerifiedModel model, UpdateOutbox outbox, DriftStatistics? statistics, CancellationToken cancellationToken)
    {
        var envelope = UpdateDeclines.Create(_identity.Federation, _identity.DeviceId, model.Cluster, model.Version, CodecSpec(model), model.Announcement.ParameterCount);
        envelope.UpdateId = UpdateEnvelopeSigner.NewUpdateId();
        envelope.Drift = statistics;
        // If it is refused, the cloud's round waits for its deadline, as it would for a silent device.
        var (updateIdHex, _) = await SignAndQueueAsync(envelope, outbox, cancellationToken).ConfigureAwait(false);
        if (updateIdHex is null)
            return;
        Statistics.DeclineEnqueued();
        LogDeclined(model.Cluster, model.Version, updateIdHex);
    }

    private EdgeRoundReport Report(LocalRoundResult trained, int cluster, string? updateId, int payloadBytes, int envelopeBytes) =>
        new(_identity.DeviceId, trained.BaseVersion, updateId, trained.Loss, trained.Accuracy, trained.Steps, trained.Duration, payloadBytes, envelopeBytes, cluster);

    private MqttLinkOptions LinkOptions()
    {
        var broker = _options.Broker ?? _identity.Broker
            ?? throw new InvalidOperationException($"No broker address for device '{_identity.DeviceId}': set Edge:Broker or pass --broker mqtt://host:port.");
        if (!Uri.TryCreate(broker, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "mqtts" or "tcp" or "ssl" or "tls"))
            throw new InvalidOperationException($"Broker address '{broker}' is not of the form mqtt://host:port.");
        var federation = _identity.Federation;
        var mqtt = _options.Mqtt;
        var (roots, clientCertificate) = EdgeTls.Load(uri, mqtt);
        return new MqttLinkOptions
        {
            Broker = uri,
            TrustedRoots = roots,
            ClientCertificate = clientCertificate,
            ClientId = _identity.DeviceId,
            UserName = _identity.MqttUserName,
            Password = _identity.MqttPassword,
            SessionExpiry = mqtt.SessionExpiry,
            KeepAlive = mqtt.KeepAlive,
            ConnectTimeout = mqtt.ConnectTimeout,
            ReconnectMinDelay = mqtt.ReconnectMinDelay,
            ReconnectMaxDelay = mqtt.ReconnectMaxDelay,
            StatusTopic = MqttTopics.Status(federation, _identity.DeviceId),
            OnlinePayload = DeviceStatuses.Create(federation, _identity.DeviceId, DeviceState.Online, time: _clock).ToByteArray(),
            OfflinePayload = DeviceStatuses.LastWill(federation, _identity.DeviceId),
            Subscriptions = _options.Drift.Enabled
                ? [MqttTopics.Model(federation), MqttTopics.ClusterAssignment(federation, _identity.DeviceId)]
                : [MqttTopics.Model(federation)],
        };
    }

    [LoggerMessage(EventId = 500, Level = LogLevel.Information, Message = "Edge agent {DeviceId} of federation {Federation} started; state in {StateDirectory}; {Samples} local samples")]
    private partial void LogStarted(string deviceId, string federation, string stateDirectory, int samples);

    [LoggerMessage(EventId = 501, Level = LogLevel.Information, Message = "Restored verified model v{Version} from disk (last trained on v{LastTrained})")]
    private partial void LogRestoredModel(long version, long lastTrained);

    [LoggerMessage(EventId = 502, Level = LogLevel.Information, Message = "Round on cluster {Cluster} v{Version}: loss {Loss:F4}, accuracy {Accuracy:P1}, {Steps} steps on {Samples} samples in {Seconds:F1} s; {Codec}+{ErrorFeedback} payload {PayloadBytes} bytes; update {UpdateId} queued")]
    private partial void LogRound(int cluster, long version, double loss, double accuracy, long steps, int samples, double seconds, string codec, string errorFeedback, int payloadBytes, string updateId);

    [LoggerMessage(EventId = 503, Level = LogLevel.Warning, Message = "Skipped training on v{Version}: the outbox is full ({Count} updates waiting for the broker)")]
    private partial void LogSkippedOutboxFull(long version, int count);

    [LoggerMessage(EventId = 505, Level = LogLevel.Error, Message = "Training on cluster {Cluster} model v{Version} failed; waiting for the next version")]
    private partial void LogTrainingFailed(Exception exception, int cluster, long version);

    [LoggerMessage(EventId = 506, Level = LogLevel.Warning, Message = "Drift statistics with reference model v{Version} failed; training without them")]
    private partial void LogDriftStatisticsFailed(Exception exception, long version);

    [LoggerMessage(EventId = 507, Level = LogLevel.Information, Message = "No local sample drew cluster {Cluster} for v{Version} (FedRC soft assignment); declining it")]
    private partial void LogNoSamplesForCluster(int cluster, long version);

    [LoggerMessage(EventId = 508, Level = LogLevel.Information, Message = "Cluster assignment epoch {Epoch}: training clusters {Clusters}; {Centres} centres for the drift rule")]
    private partial void LogAssignment(long epoch, string clusters, int centres);

    [LoggerMessage(EventId = 510, Level = LogLevel.Information, Message = "Waiting for the models of assigned clusters {Clusters} before training")]
    private partial void LogWaitingForClusterModels(string clusters);

    [LoggerMessage(EventId = 511, Level = LogLevel.Error, Message = "FedRC soft assignment for cluster assignment epoch {Epoch} failed; the assigned clusters wait for the next versions")]
    private partial void LogClusterPlanFailed(Exception exception, long epoch);

    [LoggerMessage(EventId = 509, Level = LogLevel.Warning, Message = "Cluster assignment rejected ({Reason}): {Detail}")]
    private partial void LogAssignmentRejected(string reason, string detail);

    [LoggerMessage(EventId = 512, Level = LogLevel.Debug, Message = "Decline of cluster {Cluster} v{Version} queued as {UpdateId}")]
    private partial void LogDeclined(int cluster, long version, string updateId);

    [LoggerMessage(EventId = 513, Level = LogLevel.Information, Message = "Simulated outage after training on v{Version}: offline for {Seconds:F1} s")]
    private partial void LogOutage(long version, double seconds);

    [LoggerMessage(EventId = 514, Level = LogLevel.Information, Message = "{Kind} for v{Version}: loss {Loss:F4} on {Samples} samples in {Seconds:F2} s; {Codec} payload {PayloadBytes} bytes; update {UpdateId} queued")]
    private partial void LogContribution(RoundContribution kind, long version, double loss, int samples, double seconds, string codec, int payloadBytes, string updateId);

    [LoggerMessage(EventId = 515, Level = LogLevel.Debug, Message = "Not drawn for the FedMM version after v{Version}; sending nothing")]
    private partial void LogNotActive(long version);

    [LoggerMessage(EventId = 504, Level = LogLevel.Error, Message = "Update on v{Version} was not queued and is dropped: {Reason}")]
    private partial void LogNotQueued(long version, string reason);
}

/// <summary>What the inbound router hands the agent loop.</summary>
internal abstract record AgentEvent;

/// <summary>A model version verified by one stream's receiver.</summary>
internal sealed record ModelArrived(Models.VerifiedModel Model) : AgentEvent;

/// <summary>A cluster assignment whose signature and shapes were verified.</summary>
internal sealed record AssignmentArrived(ClusterAssignment Assignment, byte[] Bytes) : AgentEvent;
