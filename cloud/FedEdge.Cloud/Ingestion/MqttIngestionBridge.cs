using System.Buffers;
using System.Collections.Concurrent;
using System.Threading.Channels;
using FedEdge.Aggregation;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Clustering;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;

namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// Takes device messages from MQTT and hands them to the grains. For updates: size limit, registry (unknown,
/// revoked, wrong federation), chunk reassembly, the protocol's decode-and-verify (Ed25519 signature, topic
/// device = envelope device, codec, dimension, NaN/∞), de-duplication against the device's accepted ids,
/// then the federation's own checks (base version, staleness). In a clustered (FedDAA) federation the update goes to the
/// cluster model it names (<c>UpdateEnvelope.cluster</c>; an unknown or retired one is refused as
/// <see cref="RejectionReason.UnknownCluster"/>) and its drift statistics, once checked
/// (<see cref="DriftStatisticsCheck"/>, else <see cref="RejectionReason.BadDriftStatistics"/>), go to the cluster directory. Every refusal is counted by reason
/// (<see cref="IngestionMetrics"/>, the device's statistics) and logged, and never reaches the model.
/// Messages are acknowledged to the broker only after the federation persisted the update, so an update the
/// cloud did not take is redelivered from its persistent session. <see cref="CloudOptions.IngestionConcurrency"/>
/// workers process in parallel, so that concurrent updates share storage commits.
/// </summary>
public sealed class MqttIngestionBridge : BackgroundService, IBrokerUpdateIngress
{
    private readonly MqttServiceConnection _mqtt;
    private readonly DeviceRegistry _registry;
    private readonly IGrainFactory _grains;
    private readonly IngestionMetrics _metrics;
    private readonly CloudOptions _options;
    private readonly ILogger<MqttIngestionBridge> _logger;
    private readonly Telemetry.Drift.IDriftEventSink? _drift;
    private readonly Channel<MqttApplicationMessageReceivedEventArgs> _queue;
    private readonly UpdateReassembler _reassembler;
    private readonly ChunkSpool? _spool;
    private readonly ConcurrentDictionary<string, UpdateVerifierOptions> _verifierOptions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, KnownFederation> _federations = new(StringComparer.Ordinal);
    private readonly UpdateBufferPool _buffers;
    /// <summary>Bounds the updates decoded and in submission at once, on either path (external-broker workers or the
    /// embedded broker's per-client interceptors, one per connected device), so every decode buffer comes from the pool.</summary>
    private readonly SemaphoreSlim _decodeSlots;
    private readonly RejectionLog _rejections;
    private readonly DeviceRateLimits _limits;
    private readonly StatusCoalescer _statuses;

    /// <summary>Status changes held back by the per-device rate (replaced by a later one before being applied).</summary>
    public long CoalescedStatuses => _statuses.Coalesced;

    /// <summary>Valid statuses of active devices received (each offered to the per-device rate).</summary>
    public long StatusesReceived => _statuses.Offered;

    public MqttIngestionBridge(MqttServiceConnection mqtt, DeviceRegistry registry, IGrainFactory grains, IngestionMetrics metrics,
        IOptions<CloudOptions> options, ILogger<MqttIngestionBridge> logger, CloudClock clock, CloudDataDirectory data, RejectionLog rejections,
        Telemetry.Drift.IDriftEventSink? drift = null)
    {
        _mqtt = mqtt;
        _registry = registry;
        _grains = grains;
        _metrics = metrics;
        _options = options.Value;
        _logger = logger;
        _drift = drift;
        _rejections = rejections;
        _limits = new DeviceRateLimits(clock.Time, new RateLimit(_options.DeviceFramesPerSecond, _options.DeviceFrameBurst),
            new RateLimit(_options.DeviceRejectedFramesPerSecond, _options.DeviceRejectedFrameBurst));
        _statuses = new StatusCoalescer(clock.Time, new RateLimit(_options.DeviceStatusPerSecond, _options.DeviceStatusBurst),
            (federation, deviceId, online) => Device(deviceId).SetOnlineAsync(federation, online));
        // An external broker acknowledged the chunks to the device already: the ones the cloud acknowledges to the broker
        // must survive the cloud (the embedded broker's devices send every chunk again instead).
        _spool = _options.UsesEmbeddedBroker ? null : new ChunkSpool(data.ChunkSpool, _options.SqliteSynchronousFull, logger);
        _reassembler = new UpdateReassembler(new ReassemblyOptions
        {
            MaxEnvelopeBytes = _options.MaxUpdateBytes,
            MaxPendingBytes = _options.ReassemblyBudgetBytes,
            MaxPendingBytesPerDevice = _options.ReassemblyShareBytes,
        }, clock.Time)
        {
            Dropped = (device, update) => _spool?.Delete(device, update),
        };
        _buffers = new UpdateBufferPool(_options.IngestionConcurrency);
        _decodeSlots = new SemaphoreSlim(_options.IngestionConcurrency, _options.IngestionConcurrency);
        _queue = Channel.CreateBounded<MqttApplicationMessageReceivedEventArgs>(new BoundedChannelOptions(1024)
        {
            FullMode = BoundedChannelFullMode.Wait,
        });
        // The embedded broker hands updates over before its PUBACK (IBrokerUpdateIngress); an external broker
        // delivers them to this subscription, and its persistent session holds them while the cloud is down.
        if (!_options.UsesEmbeddedBroker) mqtt.Subscribe($"{MqttTopics.Root}/+/update/+");
        mqtt.Subscribe($"{MqttTopics.Root}/+/status/+");
        mqtt.MessageReceived += EnqueueAsync;
    }

    /// <summary>Bytes held by incomplete chunked updates now (charged as their chunks arrived).</summary>
    public long ReassemblyPendingBytes => _reassembler.PendingBytes;

    private async Task EnqueueAsync(MqttApplicationMessageReceivedEventArgs args)
    {
        args.AutoAcknowledge = false;
        await _queue.Writer.WriteAsync(args);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Most of a message's time is spent waiting for storage, so many more workers than cores keep the group
        // commit fed; the CPU part (verify, decode) still runs on the thread pool's core-sized set of threads.
        RecoverSpooledChunks();
        var workers = Enumerable.Range(0, _options.IngestionConcurrency).Select(_ => WorkAsync(stoppingToken)).ToList();
        workers.Add(ExpireChunksAsync(stoppingToken));
        await Task.WhenAll(workers);
    }

    private async Task WorkAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var message in _queue.Reader.ReadAllAsync(stoppingToken))
            {
                var acknowledge = true;
                try
                {
                    var outcome = await HandleAsync(message.ApplicationMessage);
                    if (!outcome.IsTaken)
                    {
                        // Not acknowledged either: the broker's session keeps it and redelivers it on reconnection.
                        acknowledge = false;
                        _logger.LogDebug("Update on {Topic} not taken now ({Reason}); left unacknowledged for redelivery", message.ApplicationMessage.Topic, outcome.Reason);
                    }
                }
                catch (Exception e) when (!stoppingToken.IsCancellationRequested)
                {
                    // Not acknowledged: the broker redelivers it when the cloud's session reconnects.
                    acknowledge = false;
                    _logger.LogError(e, "Processing of {Topic} failed; left unacknowledged for redelivery", message.ApplicationMessage.Topic);
                }
                if (acknowledge)
                {
                    try
                    {
                        await message.AcknowledgeAsync(stoppingToken);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        _logger.LogDebug(e, "Acknowledging {Topic} failed (connection lost?)", message.ApplicationMessage.Topic);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task ExpireChunksAsync(CancellationToken stoppingToken)
    {
        try
        {
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(10));
            while (await timer.WaitForNextTickAsync(stoppingToken))
                if (_reassembler.RemoveExpired() is > 0 and var expired)
                    _logger.LogWarning("Dropped {Count} incomplete chunked update(s) past their timeout", expired);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <remarks>The embedded broker hands over one device's publications in the order it sent them, so the last chunk
    /// of an update that does not complete it means chunks are missing (see <see cref="HandleAsync"/>).</remarks>
    Task<IngestOutcome> IBrokerUpdateIngress.IngestAsync(MqttApplicationMessage message, CancellationToken cancellationToken) =>
        HandleAsync(message, inSenderOrder: true);

    /// <summary>Processes one message from an update or status topic (public for the benchmark and tests).</summary>
    /// <param name="message">The message.</param>
    /// <param name="inSenderOrder">Messages arrive in the order the device sent them (the embedded broker's interceptor; not
    /// the external broker's subscription, whose messages several workers take in parallel). Then the last chunk of an
    /// update that leaves it incomplete is not taken: earlier chunks expired or were dropped, and the device must send
    /// the update again rather than drop it on a success PUBACK.</param>
    public async Task<IngestOutcome> HandleAsync(MqttApplicationMessage message, bool inSenderOrder = false)
    {
        var levels = message.Topic.Split('/');
        if (levels.Length != 4 || levels[0] != MqttTopics.Root || !Identifiers.IsValid(levels[1]) || !Identifiers.IsValid(levels[3]))
        {
            _logger.LogWarning("Ignored message on unexpected topic {Topic}", message.Topic);
            return IngestOutcome.Taken;
        }
        var (federation, kind, deviceId) = (levels[1], levels[2], levels[3]);
        switch (kind)
        {
            case "update":
                return await HandleUpdateAsync(federation, deviceId, message.Payload.ToArray(), inSenderOrder);
            case "status":
                await HandleStatusAsync(federation, deviceId, message.Payload.ToArray());
                return IngestOutcome.Taken;
            default:
                return IngestOutcome.Taken;
        }
    }

    private async Task HandleStatusAsync(string federation, string deviceId, byte[] payload)
    {
        if (payload.Length == 0) return; // a cleared retained status
        var device = _registry.Find(deviceId);
        if (device is null || device.Revoked || device.Federation != federation)
        {
            _rejections.Record(deviceId, "StatusIgnored", $"not an active device of federation {federation}");
            return;
        }
        var status = DeviceStatuses.Decode(payload, federation, deviceId);
        if (!status.IsAccepted)
        {
            _rejections.Record(deviceId, "StatusIgnored", $"{status.Reason} {status.Message}");
            return;
        }
        var online = status.Value.State is not (DeviceState.Offline or DeviceState.Unspecified);
        await _statuses.OfferAsync(federation, deviceId, online);
    }

    private async Task<IngestOutcome> HandleUpdateAsync(string federation, string deviceId, byte[] frame, bool inSenderOrder)
    {
        _metrics.Frame();
        var device = _registry.Find(deviceId);
        if (device is null)
        {
            await RejectAsync(federation, deviceId, RejectionReason.UnknownDevice, "not in the registry", frame.Length, countForDevice: false);
            return IngestOutcome.Taken;
        }
        if (device.Revoked)
        {
            await RejectAsync(federation, deviceId, RejectionReason.RevokedDevice, "revoked", frame.Length, countForDevice: true);
            return IngestOutcome.Taken;
        }
        if (device.Federation != federation)
        {
            await RejectAsync(federation, deviceId, RejectionReason.WrongDevice, $"device belongs to federation {device.Federation}", frame.Length, countForDevice: true);
            return IngestOutcome.Taken;
        }

        if (_limits.RefuseFrame(deviceId) is { } tooFast)
        {
            // Retryable, and nothing else is spent on it: no verification, no grain call, no log line of its own.
            _metrics.RecordRejected(federation, RejectionReason.Busy);
            _rejections.Record(deviceId, "RateLimited", tooFast);
            return IngestOutcome.Retry(MQTTnet.Protocol.MqttPubAckReasonCode.QuotaExceeded, tooFast);
        }

        if (frame.Length > _options.MaxUpdateBytes)
        {
            await RejectAsync(federation, deviceId, RejectionReason.Oversized, $"frame of {frame.Length} bytes exceeds {_options.MaxUpdateBytes}", frame.Length, countForDevice: true);
            return IngestOutcome.Taken;
        }

        if (await FederationAsync(federation) is not { } known)
        {
            await RejectAsync(federation, deviceId, RejectionReason.UnknownFederation, $"federation {federation} is not configured", frame.Length, countForDevice: true);
            return IngestOutcome.Taken;
        }
        // What a chunk may announce (and a device may make the cloud hold) is bounded by what this model can produce.
        var maxEnvelope = UpdateEnvelopeLimits.MaxEnvelopeBytes(known.Dimension, _options.MaxUpdateBytes, _options.MaxEnvelopeMetadataBytes);
        var framed = _reassembler.Accept(deviceId, frame, maxEnvelope);
        if (framed.IsRetryable)
        {
            // The device's share (or the budget) is spent: refused without a trace in its statistics (a state write per
            // refused frame would let a device amplify its junk), and retryable, so an honest device sends it again later.
            _metrics.RecordRejected(federation, RejectionReason.Busy);
            _rejections.Record(deviceId, nameof(RejectionReason.Busy), framed.Message ?? "reassembly budget exhausted");
            return IngestOutcome.Retry(MQTTnet.Protocol.MqttPubAckReasonCode.QuotaExceeded, framed.Message ?? "reassembly budget exhausted; send again later");
        }
        if (framed.Outcome == FrameOutcome.Rejected)
        {
            await RejectAsync(federation, deviceId, Map(framed.Reason), framed.Message ?? framed.Reason.ToString(), frame.Length, countForDevice: true);
            return IngestOutcome.Taken;
        }
        if (framed.IsIncomplete && framed.Outcome == FrameOutcome.Pending && _spool is not null)
        {
            try
            {
                _spool.Append(deviceId, framed.UpdateId!, frame);
            }
            catch
            {
                // Not acknowledged, so the broker redelivers it; memory goes back to what the spool holds.
                RestoreFromSpool(deviceId, framed.UpdateId!);
                throw;
            }
        }
        if (framed.IsIncomplete)
            return inSenderOrder && framed.IsLastIndex
                ? IngestOutcome.Retry(MQTTnet.Protocol.MqttPubAckReasonCode.ImplementationSpecificError,
                    $"update {framed.UpdateId} is missing chunks (expired or refused); send all of it again")
                : IngestOutcome.Taken; // a chunk held: only the chunk completing the update answers for the update
        if (framed.Outcome == FrameOutcome.Duplicate) return IngestOutcome.Taken; // of an update stored or refused for good
        if (framed.UpdateId is not { } chunkedId) return await HandleEnvelopeAsync(federation, deviceId, device, framed.Envelope, known);

        // A chunked update is remembered as done only once stored or refused for good: after a failure the device's
        // next sending of its chunks is reassembled again instead of being answered "duplicate" and lost.
        var settled = false;
        try
        {
            var outcome = await HandleEnvelopeAsync(federation, deviceId, device, framed.Envelope, known);
            settled = outcome.IsTaken;
            return outcome;
        }
        finally
        {
            _reassembler.Settle(deviceId, chunkedId, settled);
            if (_spool is not null)
            {
                // Settled: its chunks are no longer needed. Not settled: the completing chunk stays unacknowledged and is
                // redelivered, so the chunks acknowledged before it go back into memory from the spool.
                if (settled) _spool.Delete(deviceId, chunkedId);
                else RestoreFromSpool(deviceId, chunkedId);
            }
        }
    }

    /// <summary>Puts an update's spooled chunks (and only those) back into the reassembler.</summary>
    private void RestoreFromSpool(string deviceId, string updateId)
    {
        _reassembler.Forget(deviceId, updateId);
        foreach (var frame in _spool!.Read(deviceId, updateId)) _reassembler.Accept(deviceId, frame);
    }

    /// <summary>On start: the chunks acknowledged to an external broker before the cloud stopped, back into memory.</summary>
    private void RecoverSpooledChunks()
    {
        if (_spool is null) return;
        var updates = 0;
        foreach (var (deviceId, updateId, frames) in _spool.ReadAll())
        {
            foreach (var frame in frames) _reassembler.Accept(deviceId, frame);
            updates++;
        }
        if (updates > 0) _logger.LogInformation("Recovered the chunks of {Count} incomplete update(s) from {Spool}", updates, _spool.Directory);
    }

    /// <summary>Verifies a complete envelope and submits it; returns once it is stored or refused for good (throws when
    /// storage failed).</summary>
    private async Task<IngestOutcome> HandleEnvelopeAsync(string federation, string deviceId, DeviceRecord device, ReadOnlyMemory<byte> envelope, KnownFederation known)
    {
        var dimension = known.Dimension;
        var verifierOptions = _verifierOptions.GetOrAdd(federation, f => new UpdateVerifierOptions { Federation = f, MaxEnvelopeBytes = _options.MaxUpdateBytes });
        var verified = new UpdateEnvelopeVerifier(verifierOptions, new DeviceRecordKey(device)).Verify(envelope.Span, deviceId, dimension);
        if (!verified.IsAccepted)
        {
            await RejectAsync(federation, deviceId, Map(verified.Reason), verified.Message ?? verified.Reason.ToString(), envelope.Length, countForDevice: true);
            return IngestOutcome.Taken;
        }
        var update = verified.Value;
        if (known.AddsEncoded)
        {
            // FedBuff adds the verified payload straight into its sum (the verifier already checked its structure and
            // finiteness): no decode buffer, unless the norm bound needs one (a sign payload's norm comes from its scales).
            var norm = 0.0;
            if (known.Norms.IsActive && !update.IsDecline && !UpdateNorm.TryFromPayload(update, out norm))
                norm = await DecodedNormAsync(update, dimension);
            if (!update.IsDecline && known.Norms.Check(norm) is { } tooLarge)
                await RejectAsync(federation, deviceId, RejectionReason.NormOutOfRange, tooLarge, envelope.Length, countForDevice: true);
            else
                await SubmitAsync(federation, deviceId, device, envelope, update, known, delta: null, norm);
            return IngestOutcome.Taken;
        }
        // Without the bound, 100 devices publishing at once through the embedded broker kept ~100 buffers in flight
        // against a pool of 64: every third update decoded into a fresh large-object-heap array (page faults, gen-2 GCs).
        await _decodeSlots.WaitAsync();
        try
        {
            var delta = _buffers.Rent(dimension);
            // Returned only when the submission completed (accepted or refused): a failed or timed-out grain call may
            // still be reading the buffer, so it is left to the GC then.
            var decoded = update.DecodeInto(delta);
            var norm = update.IsDecline ? 0 : UpdateNorm.Of(delta);
            if (!decoded.IsValid)
                await RejectAsync(federation, deviceId, RejectionReason.Malformed, decoded.Message ?? "payload does not decode", envelope.Length, countForDevice: true);
            else if (UpdateValidator.IndexOfNonFinite(delta) is var bad and >= 0)
                await RejectAsync(federation, deviceId, RejectionReason.NonFinite, $"decoded coordinate {bad} is {delta[bad]}", envelope.Length, countForDevice: true);
            else if (!update.IsDecline && known.Norms.Check(norm) is { } tooLarge)
                await RejectAsync(federation, deviceId, RejectionReason.NormOutOfRange, tooLarge, envelope.Length, countForDevice: true);
            else
                await SubmitAsync(federation, deviceId, device, envelope, update, known, delta, norm);
            _buffers.Return(delta);
        }
        finally
        {
            _decodeSlots.Release();
        }
        return IngestOutcome.Taken;
    }

    /// <summary>The norm of an update whose payload must be decoded to know it (a streaming federation with a norm bound).</summary>
    private async Task<double> DecodedNormAsync(VerifiedUpdate update, int dimension)
    {
        await _decodeSlots.WaitAsync();
        try
        {
            var values = _buffers.Rent(dimension);
            var norm = update.DecodeInto(values).IsValid ? UpdateNorm.Of(values) : double.NaN;
            _buffers.Return(values);
            return norm;
        }
        finally
        {
            _decodeSlots.Release();
        }
    }

    private async Task SubmitAsync(string federation, string deviceId, DeviceRecord device, ReadOnlyMemory<byte> envelope, VerifiedUpdate update,
        KnownFederation known, float[]? delta, double norm)
    {
        var updateId = update.UpdateIdHex;
        var clustered = known.Clustered;

        // FedDAA: the update names the cluster model it was trained from, and carries the device's drift statistics.
        var cluster = update.Envelope.Cluster;
        if (cluster < 0 || (cluster > 0 && !clustered))
        {
            await RejectAsync(federation, deviceId, RejectionReason.UnknownCluster, clustered
                ? $"cluster {cluster} is not a cluster number"
                : $"federation {federation} is not clustered; cluster {cluster} does not exist", envelope.Length, countForDevice: true);
            return;
        }
        IClusterDirectoryGrain Directory() => _grains.GetGrain<IClusterDirectoryGrain>(federation);
        if (cluster > 0 && !await Directory().IsLiveClusterAsync(cluster))
        {
            await RejectAsync(federation, deviceId, RejectionReason.UnknownCluster, $"federation {federation} has no live cluster {cluster} (never created, or retired)", envelope.Length, countForDevice: true);
            return;
        }
        if (clustered && update.Envelope.Drift is { } drift)
        {
            // Checked before anything is recorded, so bad statistics change nothing; kept before the submission like the
            // drift report (a stale or replayed update still carries the device's genuine, signed latest statistics).
            var problem = DriftStatisticsCheck.TryRead(drift, DateTimeOffset.UtcNow, out var statistics, out var shape)
                ? await Directory().ReportStatisticsAsync(deviceId, statistics!)
                : shape;
            if (problem is not null)
            {
                await RejectAsync(federation, deviceId, RejectionReason.BadDriftStatistics, problem, envelope.Length, countForDevice: true);
                return;
            }
        }

        // Drift report (FedDAA) recorded before the submission; idempotent per update id, so a redelivery adds nothing.
        if (_drift is not null) await _drift.RecordReportAsync(federation, deviceId, updateId, update.Envelope.BaseModelVersion, update.Envelope.DriftReport);
        var result = await Device(deviceId).SubmitAsync(federation, new UpdateSubmission
        {
            DeviceId = deviceId,
            UpdateId = updateId,
            BaseVersion = update.Envelope.BaseModelVersion,
            // Capped by what the device registered: a claim above it cannot buy more weight in a weighted mean.
            SampleCount = Math.Min(update.Envelope.SampleCount, device.MaxSamples ?? long.MaxValue),
            Delta = delta,
            Dimension = update.Dimension,
            Codec = update.Codec.Spec,
            Payload = update.Envelope.Payload.Memory,
            Envelope = envelope,
            TrainLoss = update.Envelope.Metrics?.Loss,
            Cluster = cluster,
        });
        if (!result.Accepted)
        {
            // The device grain already counted it in the device's statistics.
            await RejectAsync(federation, deviceId, result.Reason ?? RejectionReason.NotAccepting, result.Detail ?? "refused by the federation", envelope.Length, countForDevice: false);
            return;
        }
        if (!update.IsDecline) known.Norms.Record(norm);
        _metrics.RecordAccepted(federation, envelope.Length);
        _logger.LogDebug("Accepted {Update} from {Device} on v{Base} ({Bytes} bytes)", updateId, deviceId, update.Envelope.BaseModelVersion, envelope.Length);
    }

    /// <summary>
    /// The device grain's reference, kept: resolving a grain interface's type on every GetGrain call formatted its type
    /// name each time (about 1 % of the ingest path's CPU). Registered devices only reach here, so the map stays bounded.
    /// </summary>
    private IDeviceGrain Device(string deviceId) => _devices.GetOrAdd(deviceId, static (id, grains) => grains.GetGrain<IDeviceGrain>(id), _grains);

    private readonly ConcurrentDictionary<string, IDeviceGrain> _devices = new(StringComparer.Ordinal);

    /// <summary>What the bridge needs of a started federation (shared by its cluster models; a configuration never changes).</summary>
    /// <param name="Dimension">The contribution's dimension (d for updates; see <see cref="FederationStatus.ContributionLength"/>).</param>
    /// <param name="Clustered">Whether it is a FedDAA federation.</param>
    /// <param name="AddsEncoded">Whether its aggregation takes updates in their codec payload (a streaming mean), so the bridge does not decode them.</param>
    /// <param name="Norms">The federation's bound on update norms and the recent accepted norms it compares with (shared by
    /// its cluster models; in memory, so after a restart the relative bound applies again once enough updates arrived).</param>
    private sealed record KnownFederation(int Dimension, bool Clustered, bool AddsEncoded, UpdateNormBound Norms);

    /// <summary>The federation's shape; null if it is not started.</summary>
    private async Task<KnownFederation?> FederationAsync(string federation)
    {
        if (_federations.TryGetValue(federation, out var known)) return known;
        var status = await _grains.GetGrain<IFederationGrain>(federation).GetStatusAsync();
        if (status.Phase == FederationPhase.NotStarted) return null;
        return _federations[federation] = new KnownFederation(status.ContributionLength, status.Config is { IsClustered: true },
            status.AddsEncodedUpdates, new UpdateNormBound(status.Config?.MaxUpdateNorm ?? 0, status.Config?.MaxNormToMedian ?? 0));
    }

    private async Task RejectAsync(string federation, string deviceId, RejectionReason reason, string detail, long bytes, bool countForDevice)
    {
        _metrics.RecordRejected(federation, reason);
        // One log line per interval for all of a device's refusals (a line per frame would let a device fill the disk).
        _rejections.Record(deviceId, reason.ToString(), detail);
        if (reason != RejectionReason.UnknownDevice) _limits.Rejected(deviceId); // buckets for registered devices only
        _logger.LogDebug("Rejected update from {Device} in {Federation}: {Reason}: {Detail}", deviceId, federation, reason, detail);
        // Unknown ids get no grain: anyone able to publish could otherwise create state for arbitrary names.
        // (countForDevice is false also when the device grain has counted the rejection itself.)
        if (countForDevice) await Device(deviceId).RecordRejectedAsync(reason, bytes);
    }

    private static RejectionReason Map(RejectReason reason) => reason switch
    {
        RejectReason.Oversized or RejectReason.DimensionMismatch => RejectionReason.Oversized,
        RejectReason.BadSignature => RejectionReason.BadSignature,
        RejectReason.UnknownKey => RejectionReason.UnknownDevice,
        RejectReason.NonFinite => RejectionReason.NonFinite,
        RejectReason.WrongDevice or RejectReason.WrongFederation => RejectionReason.WrongDevice,
        _ => RejectionReason.Malformed,
    };
}
