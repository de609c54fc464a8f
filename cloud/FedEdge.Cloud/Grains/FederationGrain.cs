using System.Numerics.Tensors;
using FedEdge.Aggregation;
using FedEdge.Aggregation.Asynchronous;
using FedEdge.Aggregation.ServerOptimizers;
using FedEdge.Aggregation.Strategies;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Clustering;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Models;
using FedEdge.Cloud.Publishing;
using FedEdge.Cloud.Security;
using FedEdge.Cloud.Storage;
using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Protocol.Messages;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Orleans.Storage;
using SubmitResult = FedEdge.Cloud.Abstractions.SubmitResult;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// A federation: configuration, model versions and the round state machine.
/// <list type="bullet">
/// <item>Sync: a round samples devices (the strategy's ConfigureRound over live devices, or all registered ones
/// while none has reported), takes updates based on the current version until the quorum is reached or the
/// deadline passes with at least <see cref="FederationConfig.MinUpdates"/>, then aggregates, publishes the next
/// version and opens the next round.</item>
/// <item>Async: FedBuff (Nguyen et al. 2022) — each update is weighted 1/√(1+τ) (τ = versions behind), dropped
/// beyond <see cref="FederationConfig.MaxStaleness"/>; every K updates x ← x + η·Δ̄/K and the version advances.</item>
/// </list>
/// The same grain runs a FedDAA cluster model (key <see cref="ModelGrainKey.For"/>(federation, c), c &gt; 0): its own
/// versions, rounds among the devices the <see cref="ClusterDirectoryGrain"/> made live in it, update log and
/// publication on the cluster's model topics. The federation's own grain (cluster 0) is then the reference model whose
/// versions are the clustering clock, and it forwards device liveness to the directory.
/// An update is appended to the model's update log (<see cref="IUpdateLog"/>, segment v + 1) before Submit returns
/// Accepted; on activation the log's pending segment is replayed into a fresh aggregation, so a restart neither loses
/// nor double-counts them. The hot <see cref="FederationState"/> is written per version, not per update. The round history and
/// the keys of recently aggregated updates live in a second, cold record (<see cref="FederationHistory"/>) written only
/// when a version is committed, before the hot state; the keys make a redelivery after a restart a replay even
/// where the device grain's (lazily written) window has not caught up.
/// <para>
/// Group commit: the grain is reentrant so that submissions overlap while they wait for storage. The checks and
/// the hand-over to the round run in one synchronous turn; the log appends of concurrent submissions share a write
/// and its flush to disk (the log group-commits). A version is aggregated only when every update taken into the round is
/// durable, and no submission is taken while a version is being committed.
/// </para>
/// </summary>
[Reentrant]
public sealed class FederationGrain : Grain, IFederationGrain
{
    private readonly IPersistentState<FederationState> _state;
    private readonly IPersistentState<FederationHistoryState> _historyState;
    private readonly IGrainStorage _storage;
    private readonly IUpdateLog _updateLogs;
    private readonly FileSystemModelStore _models;
    private readonly ModelPublication _publication;
    private readonly DeviceRegistry _registry;
    private readonly ILogger<FederationGrain> _logger;

    private OnnxParameterVector? _vector;
    private FederationHistory? _history;
    private float[] _parameters = [];
    /// <summary>Sync cluster rounds: sampled devices that declined the open round (counted towards its quorum, never aggregated).</summary>
    private readonly HashSet<string> _declined = new(StringComparer.Ordinal);
    /// <summary>Sync: devices whose update the open round took (a device answers a round once).</summary>
    private readonly HashSet<string> _contributed = new(StringComparer.Ordinal);
    /// <summary>Cluster models: FedRC label weights of the updates taken since the last version, and the P_c(y) announced.</summary>
    private readonly ClusterLabelWeightSum _labelWeights = new();
    private float[] _labelDistribution = [];
    private IFederatedStrategy? _strategy;
    private IRoundAggregation? _round;
    private FedBuffBuffer? _buffer;
    private IGrainTimer? _deadlineTimer;
    private ErrorFeedbackServerState? _estimate;
    private Task _background = Task.CompletedTask;
    private readonly CoalescingWriter _stateWriter;
    /// <summary>Start or version commit in progress: submissions wait for it.</summary>
    private Task? _exclusive;
    /// <summary>Updates taken into the round/buffer whose log entries are not yet durable.</summary>
    private readonly HashSet<(string Device, string Update)> _unsaved = [];
    /// <summary>Durable home of the pending updates (opened on activation).</summary>
    private IModelUpdateLog? _log;
    /// <summary>Updates accepted into the open round or FedBuff buffer, in arrival order (each in the log's segment v + 1).</summary>
    private List<PendingUpdate> _pending = [];
    /// <summary>Completed (and replaced) whenever a version is committed or a FedBuff commit opens the next buffer: submissions waiting for room look again.</summary>
    private TaskCompletionSource _roomChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    /// <summary>
    /// FedBuff: while version v + 1 is written, the next buffer goes on filling. Updates taken meanwhile are held here,
    /// out of <see cref="_pending"/>, and logged in segment v + 2, so that a crash before the commit's state write replays
    /// exactly the version's own updates (see <see cref="FederationHistory"/>) and discards theirs, none of them
    /// acknowledged; the commit makes them the new version's pending updates and completes <see cref="_admission"/> once
    /// its state is durable. Null when no commit admits updates.
    /// </summary>
    private List<PendingUpdate>? _admitted;
    private TaskCompletionSource? _admission;

    public FederationGrain(
        [PersistentState("federation", CloudHostExtensions.StorageName)] IPersistentState<FederationState> state,
        [PersistentState("federation-history", CloudHostExtensions.StorageName)] IPersistentState<FederationHistoryState> history,
        IServiceProvider services,
        IUpdateLog updateLogs,
        FileSystemModelStore models,
        ModelPublication publication,
        DeviceRegistry registry,
        ILogger<FederationGrain> logger)
    {
        _state = state;
        _historyState = history;
        _storage = services.GetRequiredKeyedService<IGrainStorage>(CloudHostExtensions.StorageName);
        _updateLogs = updateLogs;
        _models = models;
        _publication = publication;
        _registry = registry;
        _logger = logger;
        _stateWriter = new CoalescingWriter(() => _state.WriteStateAsync());
    }

    /// <summary>The grain key: the federation id, or the cluster-qualified key of a cluster model.</summary>
    private string Name => this.GetPrimaryKeyString();

    private (string Federation, int Cluster) Model => _model ??= ModelGrainKey.Parse(Name);
    private (string Federation, int Cluster)? _model;

    private bool IsClusterModel => Model.Cluster > 0;

    /// <summary>The reference model of a clustered federation: its versions drive the cluster directory.</summary>
    private bool IsClusteringReference => !IsClusterModel && S.Config is { IsClustered: true };

    private FederationState S => _state.State;

    private FederationHistory History => _history ??= new FederationHistory(_historyState.State);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (History.MigrateFrom(S, _historyState.RecordExists))
        {
            // A state stored before the hot/cold split: the cold record first, so no step loses the window.
            await _historyState.WriteStateAsync(cancellationToken);
            await _stateWriter.WriteAsync();
            _logger.LogInformation("Federation {Federation}: moved its history and de-duplication window to their own record", Name);
        }
        _log = await _updateLogs.OpenAsync(Name, S.ModelVersion + 1, cancellationToken);
        await MigrateLegacyPendingAsync(cancellationToken);
        var recovered = _log.Recovered;
        if (History.Reconcile(S.ModelVersion, recovered.Select(r => r.Update)))
            _logger.LogWarning("Federation {Federation}: the commit of v{Version} stopped before its state was written; its {Pending} update(s) are aggregated again",
                Name, S.ModelVersion + 1, recovered.Count);
        if (S.Config is null || S.Retired) return;
        _labelDistribution = S.LabelDistribution ?? [];
        var blob = await _models.GetAsync(S.ModelSha256!, cancellationToken)
            ?? throw new InvalidDataException($"Federation {Name}: model v{S.ModelVersion} ({S.ModelSha256}) is missing from the model store");
        _vector = new OnnxParameterVector(blob, $"{Name} v{S.ModelVersion}");
        _parameters = _vector.Read();
        await LoadEstimateAsync(cancellationToken);
        if (!S.Finished)
        {
            RebuildAggregation();
            ReplayPending(recovered);
            if (S.Config.Mode == FederationMode.Sync && S.RoundDeadline is { } deadline) ArmDeadline(deadline);
        }
        await PublishCurrentAsync(previousChunkCount: null, cancellationToken);
        _logger.LogInformation("Federation {Federation} resumed at v{Version} with {Pending} pending update(s)", Name, S.ModelVersion, _pending.Count);
    }

    public Task<FederationStatus> StartAsync(FederationConfig config, Immutable<byte[]> initialModel) =>
        RunExclusiveAsync(() => StartCoreAsync(config, initialModel));

    private async Task<FederationStatus> StartCoreAsync(FederationConfig config, Immutable<byte[]> initialModel)
    {
        ArgumentNullException.ThrowIfNull(config);
        Identifiers.Require(Model.Federation, "federation");
        if (config.Validate() is { } problem) throw new ArgumentException($"Federation {Name}: {problem}", nameof(config));
        if (!config.Rule.Equals("sign-vote", StringComparison.Ordinal) && !AggregationRuleFactory.Names.Contains(config.Rule))
            throw new ArgumentException($"Federation {Name}: unknown rule '{config.Rule}'; expected one of {string.Join(", ", AggregationRuleFactory.Names)}", nameof(config));
        if (!UpdateCodecs.TryParse(config.Codec, out _, out var codecError))
            throw new ArgumentException($"Federation {Name}: {codecError}", nameof(config));
        if (S.Config is not null)
        {
            if (!SameConfig(S.Config, config))
                throw new InvalidOperationException($"Federation {Name} already exists with another configuration ({S.Config}); use a new federation name");
            return Status();
        }

        var vector = new OnnxParameterVector(initialModel.Value, $"{Name} initial model");
        var sha = await _models.PutAsync(initialModel.Value);
        _vector = vector;
        _parameters = vector.Read();
        S.Config = config;
        S.ModelVersion = 0;
        S.ModelSha256 = sha;
        S.ParameterCount = vector.ParameterCount;
        S.ModelBytes = initialModel.Value.Length;
        if (!IsClusterModel) _registry.AddFederation(Name);
        await LoadEstimateAsync(CancellationToken.None);
        RebuildAggregation();
        if (config.Mode == FederationMode.Sync) OpenRound();
        await _stateWriter.WriteAsync();
        _logger.LogInformation("Federation {Federation} started: {Config}, d = {Dimension}", Name, config, S.ParameterCount);
        await PublishCurrentAsync(previousChunkCount: null, CancellationToken.None);
        return Status();
    }

    public async Task<SubmitResult> SubmitAsync(UpdateSubmission update)
    {
        if (await WaitForRoomAsync() is { } busy) return Count(busy);
        // From here to the first await this runs as one turn: the checks and the hand-over to the round are atomic.
        if (IsClusterModel && (S.Config is null || S.Retired))
            return Count(SubmitResult.Reject(RejectionReason.UnknownCluster, S.Retired
                ? $"cluster {Model.Cluster} of federation {Model.Federation} was retired (no devices left)"
                : $"federation {Model.Federation} has no cluster {Model.Cluster}"));
        if (S.Config is not { } config) return Count(SubmitResult.Reject(RejectionReason.UnknownFederation, $"federation {Name} is not configured"));
        if (S.Finished) return Count(SubmitResult.Reject(RejectionReason.NotAccepting, $"federation {Name} finished at v{S.ModelVersion}"));
        if (update.Dimension != S.ParameterCount || update.Delta is { } dense && dense.Length != update.Dimension)
            return Count(SubmitResult.Reject(RejectionReason.Oversized, $"update has {update.Delta?.Length ?? update.Dimension} coordinates, the model {S.ParameterCount}"));
        if (update.SampleCount > config.MaxSampleCount)
            return Count(SubmitResult.Reject(RejectionReason.SampleCountOutOfRange, $"claims {update.SampleCount} samples, above the federation's maximum {config.MaxSampleCount}"));
        var staleness = S.ModelVersion - update.BaseVersion;
        if (staleness < 0)
            return Count(SubmitResult.Reject(RejectionReason.UnknownBaseVersion, $"base v{update.BaseVersion} was never published (current v{S.ModelVersion})"));
        if (config.Mode == FederationMode.Sync ? staleness > 0 : staleness > config.MaxStaleness)
            return Count(SubmitResult.Reject(RejectionReason.TooStale, $"base v{update.BaseVersion} is {staleness} version(s) behind v{S.ModelVersion}"));
        var key = (update.DeviceId, update.UpdateId);
        if (_unsaved.Contains(key) || _pending.Exists(p => p.DeviceId == update.DeviceId && p.UpdateId == update.UpdateId))
            return Count(SubmitResult.Reject(RejectionReason.Replay, $"update {update.UpdateId} is already pending"));
        if (History.WasAggregated(update.DeviceId, update.UpdateId))
            return Count(SubmitResult.Reject(RejectionReason.Replay, $"update {update.UpdateId} was already aggregated"));

        // FedBuff has no round to close: a decline changes nothing (accepted so the device does not resend it).
        if (config.Mode == FederationMode.Async && ClusterDeclines.IsDecline(update)) return SubmitResult.Ok;
        if (Take(update, (int)staleness) is { } refusal) return Count(SubmitResult.Reject(RejectionReason.NotAccepting, refusal));
        _unsaved.Add(key);

        var pending = new PendingUpdate(update.DeviceId, update.UpdateId, update.BaseVersion, update.SampleCount,
            update.Envelope.Length, update.TrainLoss, DateTimeOffset.UtcNow);
        try
        {
            // A device that just delivered an update is live, even if its status message has not been processed
            // yet; otherwise the next round, opened right after this one, could leave it out of the sample.
            S.Live.Add(update.DeviceId);
            // Updates admitted during a FedBuff commit of v + 1 belong to v + 2 (see _admitted).
            var logged = _log!.AppendAsync(S.ModelVersion + (_admitted is null ? 1 : 2), new LoggedUpdate(pending, update.Envelope));
            if (_admitted is { } admitted)
            {
                // Taken while a version is written: the commit makes it pending in the new version (_admitted). Waiting
                // for the commit's exclusive section too means that the check below sees it ended, so the update that
                // fills this buffer starts its aggregation.
                admitted.Add(pending);
                await Task.WhenAll(logged, _admission!.Task, _exclusive!);
            }
            else
            {
                // The log entry is all an acceptance writes: the hot state is written per version, not per update.
                _pending.Add(pending);
                await logged;
            }
        }
        catch
        {
            // The in-memory aggregation already holds the update; reload from storage so memory and disk agree.
            DeactivateOnIdle();
            throw;
        }
        finally
        {
            _unsaved.Remove(key);
        }

        if (_exclusive is null && _unsaved.Count == 0 && (config.Mode == FederationMode.Sync ? RoundAnswered(config) : _buffer!.IsFull))
        {
            try
            {
                await RunExclusiveAsync(AggregateAsync);
            }
            catch (Exception e)
            {
                // The update is safely persisted; the round stays open and the deadline retries.
                _logger.LogError(e, "Federation {Federation}: aggregation of v{Version} failed", Name, S.ModelVersion + 1);
            }
        }
        return SubmitResult.Ok;
    }

    /// <summary>Runs an operation that submissions must not interleave with (start, version commit).</summary>
    private async Task RunExclusiveAsync(Func<Task> operation) => await RunExclusiveAsync(async () =>
    {
        await operation();
        return true;
    });

    private async Task<T> RunExclusiveAsync<T>(Func<Task<T>> operation)
    {
        await WaitForExclusiveAsync();
        var done = new TaskCompletionSource();
        _exclusive = done.Task;
        try
        {
            return await operation();
        }
        finally
        {
            _exclusive = null;
            done.SetResult();
        }
    }

    private async Task WaitForExclusiveAsync()
    {
        while (_exclusive is { } busy) await busy;
    }

    /// <summary>
    /// Waits until no version is being committed and (async) the FedBuff buffer has room: a full buffer is
    /// aggregated once all its updates are durable. Returns a refusal when the buffer cannot be flushed.
    /// </summary>
    private async Task<SubmitResult?> WaitForRoomAsync()
    {
        while (true)
        {
            if (_exclusive is { } busy)
            {
                if (_admitted is not null && _buffer is { IsFull: false }) return null; // FedBuff: the next buffer fills meanwhile
                await busy;
                continue;
            }
            if (S.Config is not { Mode: FederationMode.Async } || _buffer is not { IsFull: true }) return null;
            if (_unsaved.Count > 0)
            {
                // The submission that makes the last of them durable flushes the buffer.
                await Task.WhenAny(_roomChanged.Task, Task.Delay(TimeSpan.FromSeconds(1)));
                continue;
            }
            try
            {
                await RunExclusiveAsync(AggregateAsync);
            }
            catch (Exception e)
            {
                _logger.LogError(e, "Federation {Federation}: aggregation of v{Version} failed", Name, S.ModelVersion + 1);
                return SubmitResult.Reject(RejectionReason.NotAccepting, $"the FedBuff buffer is full and v{S.ModelVersion + 1} could not be aggregated");
            }
        }
    }

    public async Task SetDeviceLiveAsync(string deviceId, bool live)
    {
        // Liveness comes from the status topic to the federation's own grain; in a clustered federation the
        // directory passes it on to the clusters the device is assigned to.
        if (IsClusteringReference) await Directory.SetDeviceOnlineAsync(deviceId, live);
        if (!(live ? S.Live.Add(deviceId) : S.Live.Remove(deviceId))) return;
        if (S.Retired) return;
        if (S.Config is { Mode: FederationMode.Sync } && !S.Finished && _round is null) OpenRound();
        await _stateWriter.WriteAsync();
    }

    public Task<FederationStatus> GetStatusAsync() => Task.FromResult(Status());

    public Task<GlobalModel?> GetModelAsync() => Task.FromResult(S.Config is null
        ? null
        : new GlobalModel { Version = S.ModelVersion, Parameters = _parameters.ToArray(), Sha256 = S.ModelSha256! });

    public async Task<Immutable<byte[]>> GetModelBytesAsync()
    {
        if (S.Config is null) throw new InvalidOperationException($"Model {Name} is not started");
        var model = await _models.GetAsync(S.ModelSha256!, CancellationToken.None)
            ?? throw new InvalidDataException($"Model {Name} v{S.ModelVersion} ({S.ModelSha256}) is missing from the model store");
        return new Immutable<byte[]>(model);
    }

    public Task RetireAsync() => RunExclusiveAsync(async () =>
    {
        if (!IsClusterModel) throw new InvalidOperationException($"Federation {Name}: only cluster models are retired");
        if (S.Config is null || S.Retired) return;
        S.Retired = true;
        _deadlineTimer?.Dispose();
        _deadlineTimer = null;
        _round = null;
        _buffer = null;
        // Pending updates of the open round are dropped with the cluster, and their log.
        var dropped = _pending;
        _pending = [];
        S.Sampled = [];
        S.RoundDeadline = null;
        await _stateWriter.WriteAsync();
        await _log!.DropThroughAsync(long.MaxValue);
        try
        {
            await _publication.WithdrawAsync(Model.Federation, Model.Cluster, S.ModelVersion, _publication.ChunkCount(S.ModelBytes), CancellationToken.None);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Model {Model}: withdrawing the retained model failed", Name);
        }
        _logger.LogInformation("Cluster {Cluster} of {Federation} retired at v{Version} ({Dropped} pending update(s) dropped)", Model.Cluster, Model.Federation, S.ModelVersion, dropped.Count);
    });

    private IClusterDirectoryGrain Directory => GrainFactory.GetGrain<IClusterDirectoryGrain>(Model.Federation);

    /// <summary>Offers the update to the open round or buffer; returns why it was refused, or null.</summary>
    private string? Take(UpdateSubmission update, int staleness)
    {
        var refusal = TakeUpdateOrDecline(update, staleness);
        if (refusal is null && IsClusterModel) _labelWeights.Add(update.Envelope.Span, Model.Cluster);
        return refusal;
    }

    /// <summary>
    /// Sync: the quorum counts updates and declines (every sampled device answered), but a version needs at least
    /// <see cref="FederationConfig.MinUpdates"/> real updates; with fewer the round waits for its deadline as before.
    /// </summary>
    private bool RoundAnswered(FederationConfig config) =>
        _round is { } round && round.AcceptedCount + _declined.Count >= S.Quorum && round.AcceptedCount >= config.MinUpdates;

    private string? TakeUpdateOrDecline(UpdateSubmission update, int staleness)
    {
        if (S.Config!.Mode == FederationMode.Async)
        {
            try
            {
                var buffered = update.Delta is { } dense ? _buffer!.TryAdd(dense, staleness) : _buffer!.TryAdd(Encoded(update), staleness);
                return buffered ? null : $"staleness {staleness} above the cut-off";
            }
            catch (InvalidUpdateException e)
            {
                return e.Reason; // the buffer is unchanged
            }
        }

        if (_round is null) OpenRound();
        if (_round is null) return "no round is open (no device available)";
        if (ClusterDeclines.IsDecline(update))
        {
            if (!S.Sampled.Contains(update.DeviceId)) return $"device {update.DeviceId} is not sampled in round {S.ModelVersion + 1}";
            if (_contributed.Contains(update.DeviceId) || !_declined.Add(update.DeviceId)) return $"device {update.DeviceId} already answered round {S.ModelVersion + 1}";
            return null;
        }
        // The bridge decodes for sync federations (their rules need the rows); only FedBuff takes payloads.
        if (update.Delta is not { } delta) return "a sync round takes decoded updates only";
        var contribution = _strategy!.Contribution == ContributionKind.PackedSigns
            ? DeviceContribution.Signs(update.DeviceId, PackSigns(delta), update.BaseVersion)
            : DeviceContribution.Update(update.DeviceId, delta, Math.Max(1, update.SampleCount), update.BaseVersion);
        var result = _round.Submit(contribution);
        if (!result.Accepted) return result.Reason;
        // An update after the device's own decline (it re-planned) replaces the decline.
        _contributed.Add(update.DeviceId);
        _declined.Remove(update.DeviceId);
        return null;
    }

    private async Task AggregateAsync()
    {
        var config = S.Config!;
        var next = _parameters.ToArray();
        float[]? estimate = null;
        if (config.Mode == FederationMode.Sync)
        {
            var participants = _round!.AcceptedCount;
            _round.Complete(next);
            if (_estimate is not null)
            {
                // The strategy applied x + a (a = aggregate of the k messages c_i); EF21's server step instead is
                // g ← g + (k/n)·a with n the federation's devices, then x ← x + η·g.
                var aggregate = new float[next.Length];
                TensorPrimitives.Subtract(next, _parameters, aggregate);
                var devices = Math.Max(participants, _registry.List(Name).Count(d => !d.Revoked));
                estimate = _estimate.Estimate.ToArray();
                TensorPrimitives.MultiplyAdd(aggregate, (float)participants / devices, estimate, estimate);
                TensorPrimitives.MultiplyAdd(estimate, (float)config.ServerLearningRate, _parameters, next);
            }
        }
        else
        {
            _buffer!.ApplyTo(next, new float[next.Length]);
        }
        if (UpdateValidator.IndexOfNonFinite(next) is var bad and >= 0)
            throw new InvalidOperationException($"Federation {Name}: aggregation produced a non-finite parameter at index {bad}; v{S.ModelVersion} kept");
        // FedBuff: the version is fixed, so new updates may fill the next buffer while it is written (the commit takes
        // 5–25 ms of model-store and SQLite fsyncs, during which ingest otherwise stood still). Not for the last version
        // of a federation with a round limit: nothing would ever aggregate that buffer.
        if (config.Mode == FederationMode.Async && !(config.Rounds > 0 && S.ModelVersion + 1 >= config.Rounds))
        {
            await CommitAdmittingAsync(next);
            return;
        }
        await CommitVersionAsync(next, estimate);
    }

    /// <summary>Commits a FedBuff version while the next buffer fills (see <see cref="_admitted"/>).</summary>
    private async Task CommitAdmittingAsync(float[] next)
    {
        _buffer = NewFedBuffBuffer(S.Config!);
        _admitted = [];
        _admission = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        SignalRoomChanged(); // submissions waiting for the full buffer may go into the next one
        try
        {
            await CommitVersionAsync(next, estimate: null);
            _admission.SetResult();
        }
        catch (Exception e)
        {
            // The grain reloads from storage (CommitVersionAsync deactivates it); the admitted updates are refused
            // unacknowledged and sent again.
            _admitted = null;
            _admission.SetException(e);
            throw;
        }
        finally
        {
            _admission = null;
        }
    }

    /// <summary>
    /// Commits version v+1: the blobs into the model store, then the cold record (its summary and the aggregated keys),
    /// then the hot state (new version and SHA-256, empty pending list). The hot state is changed only once the cold
    /// record is durable, so no write of it (a coalesced one from a liveness change included) can persist v+1 first;
    /// <see cref="FederationHistory"/> explains why this order, and how a crash between the two writes is undone.
    /// </summary>
    private async Task CommitVersionAsync(float[] next, float[]? estimate)
    {
        var config = S.Config!;
        var estimateSha = estimate is null
            ? S.EstimateSha256
            : await _models.PutAsync(System.Runtime.InteropServices.MemoryMarshal.AsBytes(estimate.AsSpan()).ToArray());
        // Read before the blobs' awaits: the updates a FedBuff buffer admits meanwhile belong to the next version.
        var aggregated = _pending;
        // A cluster version announces P_c(y) from the label weights of the updates it aggregated (else the last one).
        var labels = IsClusterModel ? _labelDistribution = _labelWeights.TakeDistribution() ?? _labelDistribution : [];
        var model = _vector!.Write(next);
        var previousChunks = _publication.ChunkCount(S.ModelBytes);
        var now = DateTimeOffset.UtcNow;
        try
        {
            // The blob and the cold record are independent (a cold record ahead of the hot state is undone on
            // activation, whether or not the blob made it), so their fsyncs overlap; the hot state needs both.
            History.RecordVersion(FederationHistory.Summarize(S.ModelVersion + 1, aggregated, S.RoundOpenedAt, now), aggregated);
            var put = _models.PutAsync(model);
            await Task.WhenAll(put, _historyState.WriteStateAsync());
            var sha = await put;
            S.EstimateSha256 = estimateSha;
            S.ModelVersion++;
            S.ModelSha256 = sha;
            S.ModelBytes = model.Length;
            if (IsClusterModel) S.LabelDistribution = labels;
            var admitting = _admitted is not null;
            S.AcceptedTotal += aggregated.Count;
            _pending = _admitted ?? [];
            _admitted = null; // from here submissions wait for this state write, as before the admission

            S.Finished = config.Rounds > 0 && S.ModelVersion >= config.Rounds;
            _parameters = next;
            if (estimate is not null) _estimate!.Load(estimate);
            _deadlineTimer?.Dispose();
            _deadlineTimer = null;
            if (!admitting) RebuildAggregation(); // else FedBuff's next buffer is already filling
            S.Sampled = [];
            S.RoundDeadline = null;
            if (config.Mode == FederationMode.Async) S.RoundOpenedAt = now;
            else if (!S.Finished) OpenRound();
            await _stateWriter.WriteAsync();
        }
        catch
        {
            // Memory is ahead of storage (the round was consumed): reload and replay from what is durable.
            DeactivateOnIdle();
            throw;
        }
        SignalRoomChanged();
        _logger.LogInformation("Federation {Federation}: v{Version} from {Updates} update(s){Finished}", Name, S.ModelVersion, aggregated.Count, S.Finished ? " (finished)" : "");

        // Cleaning up and publishing run after this turn, so that updates keep flowing in meanwhile;
        // publications are chained so that versions reach the broker in order.
        _background = FinishCommitAsync(_background, S.ModelVersion, model, previousChunks, labels);
    }

    private async Task FinishCommitAsync(Task previous, long version, byte[] model, int previousChunks, float[] labels)
    {
        await previous;
        // Publish first (devices wait for it), from the bytes in hand rather than a re-read of the store; the version's
        // log segment is dropped after.
        await PublishAsync(version, model, previousChunks, CancellationToken.None, labels);
        if (IsClusteringReference) _ = TickClusteringAsync(version);
        await DropLogThroughAsync(version);
    }

    /// <summary>Tells the cluster directory that the reference model advanced (not awaited by the commit).</summary>
    private async Task TickClusteringAsync(long version)
    {
        try
        {
            await Directory.OnReferenceVersionAsync(version);
        }
        catch (Exception e)
        {
            _logger.LogError(e, "Federation {Federation}: the cluster directory failed at reference v{Version}", Name, version);
        }
    }

    /// <summary>Drops the log's segments through a committed version (a segment left behind is dropped on the next activation).</summary>
    private async Task DropLogThroughAsync(long version)
    {
        try
        {
            await _log!.DropThroughAsync(version);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Federation {Federation}: could not drop the update log through v{Version}", Name, version);
        }
    }

    /// <summary>
    /// Moves the pending list of a state stored before the update log (<see cref="FederationState.LegacyPending"/>, each
    /// envelope in a grain-storage record of its own) into the log: appended, then the state written without the list
    /// (an interrupted move is repeated, and the log keeps an update once), then the old records deleted.
    /// </summary>
    private async Task MigrateLegacyPendingAsync(CancellationToken cancellationToken)
    {
        if (S.LegacyPending is not { } legacy) return;
        var logged = _log!.Recovered.Select(r => (r.Update.DeviceId, r.Update.UpdateId)).ToHashSet();
        foreach (var pending in legacy.Where(p => !logged.Contains((p.DeviceId, p.UpdateId))))
        {
            if (await LegacyRecord(pending).ReadAsync() is { } stored)
                await _log.AppendAsync(S.ModelVersion + 1, new LoggedUpdate(pending, stored.Envelope));
            else
                _logger.LogWarning("Federation {Federation}: pending update {Update} of {Device} was not fully persisted; dropped", Name, pending.UpdateId, pending.DeviceId);
        }
        S.AcceptedTotal -= legacy.Count; // that layout counted its pending updates; this one counts them once aggregated
        S.LegacyPending = null;
        await _stateWriter.WriteAsync();
        foreach (var pending in legacy)
        {
            try
            {
                await LegacyRecord(pending).ClearAsync();
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "Federation {Federation}: could not delete the old record of update {Update}", Name, pending.UpdateId);
            }
        }
        _log = await _updateLogs.OpenAsync(Name, S.ModelVersion + 1, cancellationToken);
        _logger.LogInformation("Federation {Federation}: moved {Count} pending update(s) into the update log", Name, legacy.Count);
    }

    private async Task LoadEstimateAsync(CancellationToken cancellationToken)
    {
        if (!S.Config!.UsesServerEstimate) return;
        _estimate = new ErrorFeedbackServerState(S.ParameterCount);
        if (S.EstimateSha256 is null) return;
        var blob = await _models.GetAsync(S.EstimateSha256, cancellationToken)
            ?? throw new InvalidDataException($"Federation {Name}: the EF estimate {S.EstimateSha256} is missing from the model store");
        _estimate.Load(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(blob));
    }

    /// <summary>Samples the round's devices; leaves no round open when no device is known yet.</summary>
    private void OpenRound()
    {
        // A cluster model samples only the devices the directory made live in it; the federation's own model falls
        // back to every registered device while none has reported.
        var available = S.Live.Count > 0 || IsClusterModel
            ? S.Live.Order(StringComparer.Ordinal).Select(id => new DeviceDescriptor(id)).ToList()
            : _registry.List(Name).Where(d => !d.Revoked).Select(d => new DeviceDescriptor(d.DeviceId)).ToList();
        if (available.Count == 0)
        {
            _round = null;
            return;
        }
        _strategy = CreateStrategy(S.Config!, available.Count);
        var plan = _strategy.ConfigureRound(new RoundContext(S.ModelVersion + 1, S.ModelVersion), available);
        _round = _strategy.BeginAggregation(plan, S.ParameterCount);
        S.Sampled = plan.Assignments.Select(a => a.DeviceId).ToList();
        S.Quorum = plan.MinimumContributions;
        S.RoundOpenedAt = DateTimeOffset.UtcNow;
        S.RoundDeadline = S.RoundOpenedAt + S.Config!.RoundDeadline;
        ArmDeadline(S.RoundDeadline.Value);
    }

    /// <summary>Recreates the in-memory aggregation for the persisted round (sampled devices) or buffer.</summary>
    private void RebuildAggregation()
    {
        var config = S.Config!;
        _round = null;
        _buffer = null;
        _declined.Clear();
        _contributed.Clear();
        if (config.Mode == FederationMode.Async)
        {
            _buffer = NewFedBuffBuffer(config);
            return;
        }
        if (S.Sampled.Count == 0) return;
        _strategy = CreateStrategy(config, S.Sampled.Count);
        var assignments = S.Sampled.Select(id => new DeviceAssignment(id, _strategy.Contribution, new Dictionary<string, string>())).ToArray();
        _round = _strategy.BeginAggregation(new RoundPlan(new RoundContext(S.ModelVersion + 1, S.ModelVersion), assignments, S.Quorum), S.ParameterCount);
    }

    private void SignalRoomChanged()
    {
        var changed = _roomChanged;
        _roomChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.SetResult();
    }

    private FedBuffBuffer NewFedBuffBuffer(FederationConfig config) =>
        new(S.ParameterCount, config.BufferSize, config.ServerLearningRate, config.MaxStaleness);

    /// <summary>Takes the logged updates of the open round or buffer into a fresh aggregation.</summary>
    private void ReplayPending(IReadOnlyList<LoggedUpdate> logged)
    {
        _pending = [];
        foreach (var (pending, envelope) in logged)
        {
            var problem = ClusterDeclines.TryDecodeStored(envelope.Span, S.ParameterCount, out var delta, out var decodeProblem) ? null : decodeProblem;
            problem ??= Take(new UpdateSubmission
            {
                DeviceId = pending.DeviceId,
                UpdateId = pending.UpdateId,
                BaseVersion = pending.BaseVersion,
                SampleCount = pending.SampleCount,
                Delta = delta,
                Dimension = delta!.Length,
                Envelope = envelope,
            }, (int)(S.ModelVersion - pending.BaseVersion));
            if (problem is null) _pending.Add(pending);
            else _logger.LogError("Federation {Federation}: pending update {Update} of {Device} cannot be replayed: {Problem}", Name, pending.UpdateId, pending.DeviceId, problem);
        }
    }

    private void ArmDeadline(DateTimeOffset deadline)
    {
        _deadlineTimer?.Dispose();
        var due = deadline - DateTimeOffset.UtcNow;
        _deadlineTimer = this.RegisterGrainTimer(OnDeadlineAsync, new GrainTimerCreationOptions
        {
            DueTime = due < TimeSpan.Zero ? TimeSpan.Zero : due,
            Period = Timeout.InfiniteTimeSpan,
            KeepAlive = true,
        });
    }

    private async Task OnDeadlineAsync(CancellationToken cancellationToken)
    {
        if (S.Finished || S.Retired || S.Config is not { Mode: FederationMode.Sync } config) return;
        if (_exclusive is not null || _unsaved.Count > 0)
        {
            // Updates taken into the round are still being made durable (or a version is being committed): look again shortly.
            ArmDeadline(DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(100));
            return;
        }
        if (_round is not null && _round.AcceptedCount >= config.MinUpdates)
        {
            _logger.LogInformation("Federation {Federation}: round {Round} deadline with {Count}/{Sampled} update(s)", Name, S.ModelVersion + 1, _round.AcceptedCount, S.Sampled.Count);
            try
            {
                await RunExclusiveAsync(AggregateAsync);
                return;
            }
            catch (Exception e)
            {
                _logger.LogError(e, "Federation {Federation}: aggregation at the deadline failed; waiting longer", Name);
            }
        }
        if (_round is null) OpenRound();
        S.RoundDeadline = DateTimeOffset.UtcNow + config.RoundDeadline;
        ArmDeadline(S.RoundDeadline.Value);
        await _stateWriter.WriteAsync();
    }

    private async Task PublishCurrentAsync(int? previousChunkCount, CancellationToken cancellationToken)
    {
        byte[] model;
        try
        {
            model = await _models.GetAsync(S.ModelSha256!, cancellationToken)
                ?? throw new InvalidDataException($"model {S.ModelSha256} is missing from the store");
        }
        catch (Exception e)
        {
            _logger.LogError(e, "Federation {Federation}: publishing v{Version} failed", Name, S.ModelVersion);
            return;
        }
        await PublishAsync(S.ModelVersion, model, previousChunkCount, cancellationToken);
    }

    private async Task PublishAsync(long version, byte[] model, int? previousChunkCount, CancellationToken cancellationToken, float[]? labels = null)
    {
        try
        {
            await _publication.PublishAsync(Model.Federation, Model.Cluster, version, model, S.ParameterCount, S.Config!.Codec, previousChunkCount, cancellationToken, labels ?? _labelDistribution);
        }
        catch (Exception e)
        {
            // The version is committed; devices get it when the cloud republishes (on activation).
            _logger.LogError(e, "Federation {Federation}: publishing v{Version} failed", Name, version);
        }
    }

    private SubmitResult Count(SubmitResult result)
    {
        if (result.Reason is { } reason) S.RejectedTotal[reason] = S.RejectedTotal.GetValueOrDefault(reason) + 1;
        return result;
    }

    /// <summary>Where a pending update's envelope was kept before the update log (read once, by the migration).</summary>
    private StorageRecord<StoredUpdate> LegacyRecord(PendingUpdate update) =>
        new(_storage, "update", GrainId.Create("fededge-update", $"{Name}/{update.DeviceId}/{update.UpdateId}"));

    private FederationStatus Status() => new()
    {
        Federation = Model.Federation,
        Cluster = Model.Cluster,
        Config = S.Config,
        Phase = S.Config is null ? FederationPhase.NotStarted : S.Retired ? FederationPhase.Retired : S.Finished ? FederationPhase.Finished : FederationPhase.Collecting,
        ModelVersion = S.ModelVersion,
        ModelSha256 = S.ModelSha256,
        ParameterCount = S.ParameterCount,
        PendingUpdates = _pending.Count,
        Sampled = S.Sampled.ToArray(),
        LiveDevices = S.Live.Count,
        AcceptedTotal = S.AcceptedTotal + _pending.Count,
        RejectedTotal = new Dictionary<RejectionReason, long>(S.RejectedTotal),
        RoundDeadline = S.RoundDeadline,
        History = History.RoundsThrough(S.ModelVersion),
    };

    private static IFederatedStrategy CreateStrategy(FederationConfig config, int count)
    {
        var options = new RoundOptions
        {
            FractionFit = config.SampleFraction,
            MinimumDevices = 1,
            QuorumFraction = config.QuorumFraction,
            Seed = config.Seed,
        };
        if (config.Rule == "sign-vote") return new SignVoteStrategy(config.ServerLearningRate, options);
        var p = config.RuleParameters;
        int? Int(string key) => p.TryGetValue(key, out var v) ? int.Parse(v, System.Globalization.CultureInfo.InvariantCulture) : null;
        double? Double(string key) => p.TryGetValue(key, out var v) ? double.Parse(v, System.Globalization.CultureInfo.InvariantCulture) : null;
        var parameters = new RuleParameters
        {
            F = config.ByzantineCount,
            M = Int("m"),
            BucketSize = Int("bucket") ?? 0,
            Seed = config.Seed,
            Tau = Double("tau") ?? 10.0,
            Iterations = Int("iters"),
            Nu = Double("nu") ?? 0.1,
        };
        // The server step x ← x + η·agg: η = 1 is plain FedAvg and needs no optimizer; other η use FedAvgM with β = 0,
        // which keeps no state between rounds. With a server estimate (EF21) the grain applies η itself to g.
        var serverStep = config.ServerLearningRate == 1.0 || config.UsesServerEstimate
            ? null
            : new FedAvgMOptimizer(config.ServerLearningRate, momentum: 0);
        return new RobustAggregationStrategy(AggregationRuleFactory.Create(config.Rule, parameters, count), options, serverOptimizer: serverStep);
    }

    /// <summary>The payload of a submission the bridge left encoded, ready to add into FedBuff's sum.</summary>
    private static EncodedUpdate Encoded(UpdateSubmission update) =>
        UpdateCodecs.TryParse(update.Codec, out var codec, out var problem)
            ? new EncodedUpdate(codec, update.Payload, update.Dimension)
            : throw new InvalidUpdateException(null, problem);

    private static byte[] PackSigns(ReadOnlySpan<float> delta)
    {
        var bits = new byte[(delta.Length + 7) / 8];
        SignCodec.PackSignBits(delta, bits);
        return bits;
    }

    private static bool SameConfig(FederationConfig a, FederationConfig b) =>
        a with { RuleParameters = b.RuleParameters } == b
        && a.RuleParameters.Count == b.RuleParameters.Count
        && a.RuleParameters.All(kv => b.RuleParameters.TryGetValue(kv.Key, out var v) && v == kv.Value);
}
