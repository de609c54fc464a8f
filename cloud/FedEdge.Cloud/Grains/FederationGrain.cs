using FedEdge.Aggregation;
using FedEdge.Aggregation.SignedDirections;
using FedEdge.Aggregation.Strategies;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Aggregation;
using FedEdge.Cloud.Clustering;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Models;
using FedEdge.Cloud.Publishing;
using FedEdge.Cloud.Security;
using FedEdge.Cloud.Storage;
using FedEdge.Compression;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using SubmitResult = FedEdge.Cloud.Abstractions.SubmitResult;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// One model of a federation: it hosts the federation's <see cref="IFederationStrategy"/> (built once from the
/// configuration by <see cref="FederationStrategyFactory"/>: sync rounds, FedBuff, FedAsync or FedFix over a rule and a
/// server step), makes what the strategy takes durable, and publishes each version. The strategy decides who is asked,
/// what a contribution weighs, when a version is ready and how it is computed; the grain only
/// <list type="bullet">
/// <item>persists: an accepted update is appended to the model's update log (<see cref="IUpdateLog"/>, segment v + 1)
/// before Submit returns Accepted; a version's commit writes the model blob and the strategy's changed server state
/// (<see cref="ServerState"/>) to the model store, then the cold <see cref="FederationHistory"/>, then the hot
/// <see cref="FederationState"/>. On activation the server state is restored and the log's pending segment replayed
/// into a fresh aggregation, so a restart (or another silo) neither loses nor double-counts an update;</item>
/// <item>publishes each committed version (<see cref="ModelPublication"/>), in order, after the commit's turn;</item>
/// <item>keeps time: the open version's deadline (a sync round's, FedFix's period) follows the host's
/// <see cref="TimeProvider"/>.</item>
/// </list>
/// A FedDAA cluster model (key <see cref="ModelGrainKey.For"/>(federation, c), c &gt; 0) runs the same way over the devices
/// the <see cref="ClusterDirectoryGrain"/> made live in it, and announces P_c(y) with its versions; the federation's own
/// model (cluster 0) is then the reference whose versions drive the clustering.
/// <para>
/// Group commit: the grain is reentrant so that submissions overlap while they wait for storage. The checks and the
/// hand-over to the aggregation run in one synchronous turn; the log appends of concurrent submissions share a write
/// and its flush (the log group-commits). A version is aggregated only when every update taken into it is durable,
/// and no submission is taken while a version is committed, except into FedBuff's next buffer (see
/// <see cref="_admitted"/>).
/// </para>
/// </summary>
[Reentrant]
public sealed partial class FederationGrain : Grain, IFederationGrain
{
    /// <summary>Committed versions remembered in <see cref="FederationState.RecentVersions"/> (FedFix's τ_i, FedAsync's x_τ).</summary>
    private const int RecentVersionLimit = 128;

    private static readonly TimeSpan FleetRefresh = TimeSpan.FromSeconds(10);

    private readonly IPersistentState<FederationState> _state;
    private readonly IPersistentState<FederationHistoryState> _historyState;
    private readonly IUpdateLog _updateLogs;
    private readonly FileSystemModelStore _models;
    private readonly ModelPublication _publication;
    private readonly DeviceRegistry _registry;
    private readonly TimeProvider _clock;
    private readonly ILogger<FederationGrain> _logger;
    private readonly CoalescingWriter _stateWriter;

    private OnnxParameterVector? _vector;
    private FederationHistory? _history;
    private float[] _parameters = [];
    private IFederationStrategy? _strategy;
    /// <summary>The next version in progress (null: a sync round with nobody to ask yet).</summary>
    private IVersionAggregation? _version;
    /// <summary>FedAsync: models of recent versions.</summary>
    private PastModels _pastModels = new(0);
    /// <summary>Cluster models: the P_c(y) announced with the current version.</summary>
    private float[] _labelDistribution = [];
    private ModelRole? _role;
    private ITimer? _deadlineTimer;
    private Task _background = Task.CompletedTask;
    private (DateTimeOffset At, IReadOnlyList<DeviceDescriptor> Devices)? _fleet;
    /// <summary>Start or version commit in progress: submissions wait for it.</summary>
    private Task? _exclusive;
    /// <summary>Updates taken into the aggregation whose log entries are not yet durable.</summary>
    private readonly HashSet<(string Device, string Update)> _unsaved = [];
    /// <summary>Durable home of the pending updates (opened on activation).</summary>
    private IModelUpdateLog? _log;
    /// <summary>Updates accepted into the open version, in arrival order (each in the log's segment v + 1).</summary>
    private List<PendingUpdate> _pending = [];
    /// <summary>Completed (and replaced) whenever a version is committed or FedBuff's next buffer opens: submissions waiting for room look again.</summary>
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
        IUpdateLog updateLogs,
        FileSystemModelStore models,
        ModelPublication publication,
        DeviceRegistry registry,
        CloudClock clock,
        ILogger<FederationGrain> logger)
    {
        _state = state;
        _historyState = history;
        _updateLogs = updateLogs;
        _models = models;
        _publication = publication;
        _registry = registry;
        _clock = clock.Time;
        _logger = logger;
        _stateWriter = new CoalescingWriter(() => _state.WriteStateAsync());
    }

    /// <summary>The grain key: the federation id, or the cluster-qualified key of a cluster model.</summary>
    private string Name => this.GetPrimaryKeyString();

    private (string Federation, int Cluster) Model => _model ??= ModelGrainKey.Parse(Name);
    private (string Federation, int Cluster)? _model;

    /// <summary>What this model is in its federation (its only model, FedDAA's reference, or a cluster model).</summary>
    private ModelRole Role => _role ??= ModelRole.For(Name, S.Config, GrainFactory, _logger);

    private FederationState S => _state.State;

    private FederationHistory History => _history ??= new FederationHistory(_historyState.State);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _log = await _updateLogs.OpenAsync(Name, S.ModelVersion + 1, cancellationToken);
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
        _strategy = FederationStrategyFactory.Create(S.Config, S.ParameterCount, shape: _vector.Shape);
        _pastModels = new PastModels(_strategy.ModelHistory);
        await ServerStateBlobs.RestoreAsync(_models, S.ServerState, _strategy.State, $"Federation {Name}", cancellationToken);
        await _pastModels.RestoreAsync(S.RecentVersions, S.ModelVersion, _parameters, _models, Name, cancellationToken);
        if (!S.Finished)
        {
            ResumeVersion();
            ReplayPending(recovered);
            ArmDeadline();
        }
        await PublishCurrentAsync(previousChunkCount: null, cancellationToken);
        _logger.LogInformation("Federation {Federation} resumed at v{Version} with {Pending} pending update(s): {Strategy}", Name, S.ModelVersion, _pending.Count, _strategy.Name);
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _deadlineTimer?.Dispose();
        return Task.CompletedTask;
    }

    public Task<FederationStatus> StartAsync(FederationConfig config, Immutable<byte[]> initialModel) =>
        RunExclusiveAsync(() => StartCoreAsync(config, initialModel));

    private async Task<FederationStatus> StartCoreAsync(FederationConfig config, Immutable<byte[]> initialModel)
    {
        ArgumentNullException.ThrowIfNull(config);
        Identifiers.Require(Model.Federation, "federation");
        var vector = new OnnxParameterVector(initialModel.Value, $"{Name} initial model");
        if (FederationStrategyFactory.Validate(config, vector.ParameterCount, vector.Shape) is { } problem) throw new ArgumentException($"Federation {Name}: {problem}", nameof(config));
        if (!UpdateCodecs.TryParse(config.Codec, out _, out var codecError))
            throw new ArgumentException($"Federation {Name}: {codecError}", nameof(config));
        if (S.Config is not null)
        {
            if (!SameConfig(S.Config, config))
                throw new InvalidOperationException($"Federation {Name} already exists with another configuration ({S.Config}); use a new federation name");
            return Status();
        }

        var sha = await _models.PutAsync(initialModel.Value);
        _vector = vector;
        _parameters = vector.Read();
        _strategy = FederationStrategyFactory.Create(config, vector.ParameterCount, shape: vector.Shape);
        S.Config = config;
        _role = null; // the configuration decides whether this is a clustering reference
        S.ModelVersion = 0;
        S.ModelSha256 = sha;
        S.ParameterCount = vector.ParameterCount;
        S.ModelBytes = initialModel.Value.Length;
        S.RecentVersions = [new VersionRecord(0, sha, _clock.GetUtcNow())];
        _pastModels = new PastModels(_strategy.ModelHistory);
        _pastModels.Keep(0, _parameters);
        if (Model.Cluster == 0) _registry.AddFederation(Name);
        OpenVersion();
        await _stateWriter.WriteAsync();
        _logger.LogInformation("Federation {Federation} started: {Strategy}, d = {Dimension}", Name, _strategy.Name, S.ParameterCount);
        await PublishCurrentAsync(previousChunkCount: null, CancellationToken.None);
        return Status();
    }

    public async Task<SubmitResult> SubmitAsync(UpdateSubmission update)
    {
        if (await WaitForRoomAsync() is { } busy) return Count(busy);
        // From here to the first await this runs as one turn: the checks and the hand-over to the aggregation are atomic.
        if (Model.Cluster > 0 && (S.Config is null || S.Retired))
            return Count(SubmitResult.Reject(RejectionReason.UnknownCluster, S.Retired
                ? $"cluster {Model.Cluster} of federation {Model.Federation} was retired (no devices left)"
                : $"federation {Model.Federation} has no cluster {Model.Cluster}"));
        if (S.Config is not { } config) return Count(SubmitResult.Reject(RejectionReason.UnknownFederation, $"federation {Name} is not configured"));
        if (S.Finished) return Count(SubmitResult.Reject(RejectionReason.NotAccepting, $"federation {Name} finished at v{S.ModelVersion}"));
        var expected = _strategy!.ContributionLength;
        if (update.Dimension != expected || update.Delta is { } dense && dense.Length != update.Dimension)
            return Count(SubmitResult.Reject(RejectionReason.Oversized, $"contribution has {update.Delta?.Length ?? update.Dimension} coordinates, {_strategy.Name} takes {expected}"));
        if (update.SampleCount > config.MaxSampleCount)
            return Count(SubmitResult.Reject(RejectionReason.SampleCountOutOfRange, $"claims {update.SampleCount} samples, above the federation's maximum {config.MaxSampleCount}"));
        if (update.BaseVersion > S.ModelVersion)
            return Count(SubmitResult.Reject(RejectionReason.UnknownBaseVersion, $"base v{update.BaseVersion} was never published (current v{S.ModelVersion})"));
        var key = (update.DeviceId, update.UpdateId);
        if (_unsaved.Contains(key) || _pending.Exists(p => p.DeviceId == update.DeviceId && p.UpdateId == update.UpdateId))
            return Count(SubmitResult.Reject(RejectionReason.Replay, $"update {update.UpdateId} is already pending"));
        if (History.WasAggregated(update.DeviceId, update.UpdateId))
            return Count(SubmitResult.Reject(RejectionReason.Replay, $"update {update.UpdateId} was already aggregated"));

        // Where declines do not count (asynchronous modes) they change nothing: accepted so the device does not resend.
        if (!_strategy!.CountsDeclines && ClusterDeclines.IsDecline(update)) return SubmitResult.Ok;
        if (Offer(update) is { } refusal)
            return Count(SubmitResult.Reject(refusal.Kind == RefusalKind.TooStale ? RejectionReason.TooStale : RejectionReason.NotAccepting, refusal.Reason));
        _unsaved.Add(key);

        var pending = new PendingUpdate(update.DeviceId, update.UpdateId, update.BaseVersion, update.SampleCount,
            update.Envelope.Length, update.TrainLoss, _clock.GetUtcNow());
        try
        {
            // A device that just delivered an update is live, even if its status message has not been processed
            // yet; otherwise the next round, opened right after this one, could leave it out of the sample.
            if (S.Live.Add(update.DeviceId)) _live = null;
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

        if (_exclusive is null && _unsaved.Count == 0 && _version is { IsReady: true })
        {
            try
            {
                await RunExclusiveAsync(AggregateAsync);
            }
            catch (Exception e)
            {
                // The update is safely persisted; the version stays open and the deadline (or the next update) retries.
                _logger.LogError(e, "Federation {Federation}: aggregation of v{Version} failed", Name, S.ModelVersion + 1);
            }
        }
        return SubmitResult.Ok;
    }

    /// <summary>Offers an update to the open version (opening one if none is); returns why it was refused, or null.</summary>
    private Refusal? Offer(UpdateSubmission update)
    {
        if (_version is null) OpenVersion();
        if (_version is null) return new Refusal(RefusalKind.NotExpected, "no round is open (no device available)");
        var contribution = ClusterDeclines.IsDecline(update)
            ? DeviceContribution.Decline(update.DeviceId, update.BaseVersion)
            : _strategy!.Contribution == ContributionKind.DirectionalSigns && update.Delta is { } answers
                // FAR-SIGN's answers arrive as ±1 values of the scaled-sign codec: one bit each.
                ? DeviceContribution.SignAnswers(update.DeviceId, SignAnswerPacket.FromSigns(answers), update.BaseVersion)
            : update.Delta is { } delta
                ? DeviceContribution.Update(update.DeviceId, delta, Math.Max(1, update.SampleCount), update.BaseVersion)
                : _strategy!.AddsEncodedUpdates
                    ? new DeviceContribution(update.DeviceId, update.BaseVersion, Math.Max(1, update.SampleCount), default, Encoded(update))
                    : default;
        if (contribution.DeviceId is null) return new Refusal(RefusalKind.Invalid, $"{_strategy!.Name} takes decoded updates only");
        var received = _clock.GetUtcNow();
        contribution = contribution with
        {
            BaseModel = _pastModels.Find(update.BaseVersion),
            TrainingTime = CommittedAt(update.BaseVersion) is { } published ? received - published : default,
        };
        var refusal = _version.Offer(contribution);
        if (refusal is null) Role.OnAccepted(update.Envelope.Span);
        return refusal;
    }

    /// <summary>When <paramref name="version"/> was committed, if it is among the recent ones (searched newest first: most updates are fresh).</summary>
    private DateTimeOffset? CommittedAt(long version)
    {
        for (var i = S.RecentVersions.Count - 1; i >= 0; i--)
            if (S.RecentVersions[i].Version == version) return S.RecentVersions[i].CommittedAt;
        return null;
    }

    /// <summary>Runs an operation that submissions must not interleave with (start, version commit).</summary>
    private async Task RunExclusiveAsync(Func<Task> operation) => await RunExclusiveAsync(async () =>
    {
        await operation();
        return true;
    });

    private async Task<T> RunExclusiveAsync<T>(Func<Task<T>> operation)
    {
        while (_exclusive is { } busy) await busy;
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

    /// <summary>
    /// Waits until no version is being committed and the open version has room (a full FedBuff buffer or FedAsync
    /// version is aggregated once all its updates are durable). Returns a refusal when it cannot be aggregated.
    /// </summary>
    private async Task<SubmitResult?> WaitForRoomAsync()
    {
        while (true)
        {
            if (_exclusive is { } busy)
            {
                if (_admitted is not null && _version is { IsFull: false }) return null; // FedBuff: the next buffer fills meanwhile
                await busy;
                continue;
            }
            if (_version is not { IsFull: true }) return null;
            if (_unsaved.Count > 0)
            {
                // The submission that makes the last of them durable aggregates the version.
                await Task.WhenAny(_roomChanged.Task, Task.Delay(TimeSpan.FromSeconds(1), _clock));
                continue;
            }
            try
            {
                await RunExclusiveAsync(AggregateAsync);
            }
            catch (Exception e)
            {
                _logger.LogError(e, "Federation {Federation}: aggregation of v{Version} failed", Name, S.ModelVersion + 1);
                return SubmitResult.Reject(RejectionReason.NotAccepting, $"v{S.ModelVersion + 1} is full and could not be aggregated");
            }
        }
    }

    public async Task SetDeviceLiveAsync(string deviceId, bool live)
    {
        // Liveness comes from the status topic to the federation's own grain; in a clustered federation the
        // directory passes it on to the clusters the device is assigned to.
        await Role.OnDeviceLiveAsync(deviceId, live);
        if (!(live ? S.Live.Add(deviceId) : S.Live.Remove(deviceId))) return;
        _live = null;
        if (S.Retired) return;
        if (S.Config is not null && !S.Finished && _version is null) OpenVersion();
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
        if (!Role.CanRetire) throw new InvalidOperationException($"Federation {Name}: only cluster models are retired");
        if (S.Config is null || S.Retired) return;
        S.Retired = true;
        _deadlineTimer?.Dispose();
        _deadlineTimer = null;
        _version = null;
        // Pending updates of the open round are dropped with the cluster, and their log.
        var dropped = _pending;
        _pending = [];
        S.Sampled = [];
        S.RoundDeadline = null;
        await _stateWriter.WriteAsync();
        await _log!.DropThroughAsync(long.MaxValue);
        try
        {
            await _publication.WithdrawAsync(Model.Federation, Model.Cluster, S.ModelVersion, _publication.ChunkCount(PublishedBytes(S.ModelBytes)), CancellationToken.None);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "Model {Model}: withdrawing the retained model failed", Name);
        }
        _logger.LogInformation("Cluster {Cluster} of {Federation} retired at v{Version} ({Dropped} pending update(s) dropped)", Model.Cluster, Model.Federation, S.ModelVersion, dropped.Count);
    });

    private SubmitResult Count(SubmitResult result)
    {
        if (result.Reason is { } reason) S.RejectedTotal[reason] = S.RejectedTotal.GetValueOrDefault(reason) + 1;
        return result;
    }

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
        Strategy = _strategy?.Name ?? "",
        AddsEncodedUpdates = _strategy?.AddsEncodedUpdates ?? false,
        ContributionLength = _strategy?.ContributionLength ?? S.ParameterCount,
        PublishedModelBytes = S.ModelBytes + (_strategy is IPublishesWithModel extras ? extras.PublishedStatistics.Length * sizeof(float) : 0),
    };

    /// <summary>The payload of a submission the bridge left encoded, ready to add into a streaming sum.</summary>
    private static EncodedUpdate Encoded(UpdateSubmission update) =>
        UpdateCodecs.TryParse(update.Codec, out var codec, out var problem)
            ? new EncodedUpdate(codec, update.Payload, update.Dimension)
            : throw new InvalidUpdateException(null, problem);

    private static bool SameConfig(FederationConfig a, FederationConfig b) =>
        a with { RuleParameters = b.RuleParameters } == b
        && a.RuleParameters.Count == b.RuleParameters.Count
        && a.RuleParameters.All(kv => b.RuleParameters.TryGetValue(kv.Key, out var v) && v == kv.Value);
}
