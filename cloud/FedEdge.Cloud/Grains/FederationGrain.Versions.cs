using FedEdge.Aggregation;
using FedEdge.Aggregation.Strategies;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Clustering;
using FedEdge.Cloud.Publishing;
using FedEdge.Cloud.Storage;
using FedEdge.Protocol;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// The version lifecycle of <see cref="FederationGrain"/>: the strategy's plan for the next version, its deadline on the
/// injected clock, the aggregation when the version is ready, and the commit protocol that makes it durable and
/// publishes it (see the class's own summary for the order of the writes).
/// </summary>
public sealed partial class FederationGrain
{
    public async Task<bool> CheckDeadlineAsync()
    {
        if (S.Finished || S.Retired || S.Config is null || S.RoundDeadline is not { } deadline) return false;
        var now = _clock.GetUtcNow();
        if (now < deadline)
        {
            ArmDeadline();
            return false;
        }
        if (_exclusive is not null || _unsaved.Count > 0)
        {
            // Updates taken into the version are still being made durable (or a version is being committed): look again shortly.
            ArmDeadline(now + TimeSpan.FromMilliseconds(100));
            return false;
        }
        if (_version is { Count: > 0 } version && version.AtDeadline() == DeadlineDecision.Aggregate)
        {
            _logger.LogInformation("Federation {Federation}: v{Version} deadline with {Count} update(s)", Name, S.ModelVersion + 1, version.Count);
            try
            {
                await RunExclusiveAsync(AggregateAsync);
                return true;
            }
            catch (Exception e)
            {
                _logger.LogError(e, "Federation {Federation}: aggregation at the deadline failed; waiting longer", Name);
            }
        }
        if (_version is null) OpenVersion();
        else
        {
            // Too little arrived: wait one more period, on the plan's grid (FedFix aggregates every Δt).
            var period = _version.Plan.Period ?? S.Config.RoundDeadline;
            do deadline += period; while (deadline <= now);
            S.RoundDeadline = deadline;
        }
        ArmDeadline();
        await _stateWriter.WriteAsync();
        return false;
    }

    /// <summary>Plans the next version from the current model (sync: samples the round's devices); none when nobody can be asked.</summary>
    private void OpenVersion() => OpenVersion(S.ModelVersion, _parameters);

    private void OpenVersion(long currentVersion, float[] model)
    {
        var now = _clock.GetUtcNow();
        var plan = _strategy!.Plan(new VersionContext(currentVersion, now, Fleet().Count) { Model = model }, Available());
        _version = plan is null ? null : _strategy.Begin(plan);
        S.Sampled = plan?.Participants?.ToList() ?? [];
        S.Quorum = plan?.Quorum ?? 0;
        S.RoundOpenedAt = now;
        S.RoundDeadline = plan?.Deadline;
        ArmDeadline();
    }

    /// <summary>Recreates the open version after activation: a sync round keeps its persisted sample, quorum and deadline.</summary>
    private void ResumeVersion()
    {
        var plan = _strategy!.Plan(new VersionContext(S.ModelVersion, _clock.GetUtcNow(), Fleet().Count) { Model = _parameters }, Available());
        if (plan is null || plan.Participants is not null && S.Sampled.Count == 0)
        {
            _version = null; // a sync round opens once a device can be asked
            return;
        }
        plan = plan with { Deadline = S.RoundDeadline ?? plan.Deadline };
        if (plan.Participants is not null) plan = plan with { Participants = S.Sampled.ToArray(), Quorum = S.Quorum };
        _version = _strategy.Begin(plan);
    }

    /// <summary>Devices a sync round may sample: a cluster model's live members; the federation's live devices, or
    /// every registered one while none has reported.</summary>
    private IReadOnlyList<DeviceDescriptor> Available() => S.Live.Count > 0 || Role.SamplesLiveDevicesOnly
        ? _live ??= S.Live.Order(StringComparer.Ordinal).Select(id => new DeviceDescriptor(id)).ToList()
        : Fleet();

    /// <summary><see cref="FederationState.Live"/> as descriptors, until it changes (built per version otherwise).</summary>
    private IReadOnlyList<DeviceDescriptor>? _live;

    /// <summary>The federation's registered devices (n of EF21 and FedFix), read at most every <see cref="FleetRefresh"/>.</summary>
    private IReadOnlyList<DeviceDescriptor> Fleet()
    {
        var now = _clock.GetUtcNow();
        if (_fleet is { } fleet && now - fleet.At < FleetRefresh) return fleet.Devices;
        var devices = _registry.List(Model.Federation).Where(d => !d.Revoked).Select(d => new DeviceDescriptor(d.DeviceId)).ToList();
        _fleet = (now, devices);
        return devices;
    }

    /// <summary>Takes the logged updates of the open version into its fresh aggregation.</summary>
    private void ReplayPending(IReadOnlyList<LoggedUpdate> logged)
    {
        _pending = [];
        foreach (var (pending, envelope) in logged)
        {
            var problem = ClusterDeclines.TryDecodeStored(envelope.Span, _strategy!.ContributionLength, out var delta, out var decodeProblem) ? null : decodeProblem;
            problem ??= Offer(new UpdateSubmission
            {
                DeviceId = pending.DeviceId,
                UpdateId = pending.UpdateId,
                BaseVersion = pending.BaseVersion,
                SampleCount = pending.SampleCount,
                Delta = delta,
                Dimension = delta!.Length,
                Envelope = envelope,
            })?.Reason;
            if (problem is null) _pending.Add(pending);
            else _logger.LogError("Federation {Federation}: pending update {Update} of {Device} cannot be replayed: {Problem}", Name, pending.UpdateId, pending.DeviceId, problem);
        }
    }

    /// <summary>Arms the timer for <paramref name="due"/>, or for the open version's deadline (none: disarmed).</summary>
    private void ArmDeadline(DateTimeOffset? due = null)
    {
        _deadlineTimer?.Dispose();
        _deadlineTimer = null;
        if ((due ?? S.RoundDeadline) is not { } at) return;
        var wait = at - _clock.GetUtcNow();
        var self = this.AsReference<IFederationGrain>();
        _deadlineTimer = _clock.CreateTimer(_ => _ = self.CheckDeadlineAsync(), null, wait < TimeSpan.Zero ? TimeSpan.Zero : wait, Timeout.InfiniteTimeSpan);
    }

    private void SignalRoomChanged()
    {
        var changed = _roomChanged;
        _roomChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.SetResult();
    }

    private async Task AggregateAsync()
    {
        var config = S.Config!;
        var next = _parameters.ToArray();
        var version = _version!;
        version.Complete(next);
        if (UpdateValidator.IndexOfNonFinite(next) is var bad and >= 0)
            throw new InvalidOperationException($"Federation {Name}: aggregation produced a non-finite parameter at index {bad}; v{S.ModelVersion} kept");
        // Asynchronous modes: the version is fixed, so new updates may fill the next one while it is written (the commit
        // takes 5–25 ms of model-store and SQLite fsyncs, during which ingest otherwise stood still). Not for the last
        // version of a federation with a round limit: nothing would ever aggregate the next.
        if (version.Plan.Participants is null && !(config.Rounds > 0 && S.ModelVersion + 1 >= config.Rounds))
        {
            await CommitAdmittingAsync(next);
            return;
        }
        await CommitVersionAsync(next, admitting: false);
    }

    /// <summary>Commits a version while the next one fills (see <see cref="_admitted"/>).</summary>
    private async Task CommitAdmittingAsync(float[] next)
    {
        _admitted = [];
        _admission = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        OpenVersion(S.ModelVersion + 1, next);
        SignalRoomChanged(); // submissions waiting for the full version may go into the next one
        try
        {
            await CommitVersionAsync(next, admitting: true);
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
    /// Commits version v+1: the model blob and the strategy's changed server state into the model store, with the cold
    /// record (its summary and the aggregated keys), then the hot state (new version, SHA-256s, empty pending list). The
    /// hot state is changed only once the cold record is durable, so no write of it (a coalesced one from a liveness
    /// change included) can persist v+1 first; <see cref="FederationHistory"/> explains why this order, and how a crash
    /// between the two writes is undone.
    /// </summary>
    private async Task CommitVersionAsync(float[] next, bool admitting)
    {
        var config = S.Config!;
        // Read before the blobs' awaits: the updates admitted meanwhile belong to the next version.
        var aggregated = _pending;
        // A cluster version announces P_c(y) from the label weights of the updates it aggregated (else the last one).
        var labels = _labelDistribution = Role.TakeVersionLabels(_labelDistribution);
        var model = _vector!.Write(next);
        var previousChunks = _publication.ChunkCount(PublishedBytes(S.ModelBytes));
        var changedState = _strategy!.State.TakeChanged();
        var now = _clock.GetUtcNow();
        try
        {
            // The blobs and the cold record are independent (a cold record ahead of the hot state is undone on
            // activation, whether or not the blobs made it), so their fsyncs overlap; the hot state needs them all.
            History.RecordVersion(FederationHistory.Summarize(S.ModelVersion + 1, aggregated, S.RoundOpenedAt, now), aggregated);
            var put = _models.PutAsync(model);
            var stateBlobs = ServerStateBlobs.SaveAsync(_models, changedState);
            await Task.WhenAll(put, stateBlobs, _historyState.WriteStateAsync());
            var sha = await put;
            foreach (var (name, stateSha) in await stateBlobs) S.ServerState[name] = stateSha;
            S.ModelVersion++;
            S.ModelSha256 = sha;
            S.ModelBytes = model.Length;
            S.RecentVersions.Add(new VersionRecord(S.ModelVersion, sha, now));
            if (S.RecentVersions.Count > RecentVersionLimit) S.RecentVersions.RemoveRange(0, S.RecentVersions.Count - RecentVersionLimit);
            _pastModels.Keep(S.ModelVersion, next);
            S.LabelDistribution = labels;
            S.AcceptedTotal += aggregated.Count;
            _pending = _admitted ?? [];
            _admitted = null; // from here submissions wait for this state write, as before the admission
            S.Finished = config.Rounds > 0 && S.ModelVersion >= config.Rounds;
            _parameters = next;
            if (S.Finished)
            {
                _version = null;
                S.Sampled = [];
                S.RoundDeadline = null;
                ArmDeadline();
            }
            else if (!admitting)
            {
                OpenVersion(); // else the next version is already filling
            }
            await _stateWriter.WriteAsync();
        }
        catch
        {
            // Memory is ahead of storage (the version was consumed): reload and replay from what is durable.
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
        Role.OnVersionPublished(version);
        await DropLogThroughAsync(version);
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
            // FedMM's devices need Ŝ with θ, FAR-SIGN's the version's work seed; every device is told what to compute.
            var extras = _strategy as IPublishesWithModel;
            var statistics = extras?.PublishedStatistics ?? default;
            var published = statistics.IsEmpty ? model : ModelBundle.Join(model, statistics.Span);
            await _publication.PublishAsync(Model.Federation, Model.Cluster, version, published, S.ParameterCount, S.Config!.Codec, previousChunkCount, cancellationToken,
                labels ?? _labelDistribution, new AnnouncedAlgorithm(extras?.AnnouncedAlgorithm is { Length: > 0 } announced ? announced : AlgorithmSpec.Parse(S.Config.Algorithm).ToString(),
                    statistics.Length, extras?.WorkSeed(version) ?? 0));
        }
        catch (Exception e)
        {
            // The version is committed; devices get it when the cloud republishes (on activation).
            _logger.LogError(e, "Federation {Federation}: publishing v{Version} failed", Name, version);
        }
    }

    /// <summary>Bytes published for a model blob of <paramref name="modelBytes"/> (FedMM appends its statistics).</summary>
    private long PublishedBytes(long modelBytes) =>
        modelBytes + (_strategy is IPublishesWithModel extras ? (long)extras.PublishedStatistics.Length * sizeof(float) : 0);
}
