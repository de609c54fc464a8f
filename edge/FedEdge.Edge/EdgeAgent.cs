using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Edge.Identity;
using FedEdge.Edge.Models;
using FedEdge.Edge.Mqtt;
using FedEdge.Edge.Outbox;
using FedEdge.Edge.Training;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
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
/// and queueing go on while the link is down.
/// </summary>
public sealed partial class EdgeAgent
{
    public const string OutboxDirectoryName = "outbox";
    public const string ModelDirectoryName = "model";
    public const string ErrorFeedbackFileName = "error-feedback.bin";
    public const string ProgressFileName = "agent.json";

    private readonly EdgeAgentOptions _options;
    private readonly EdgeDeviceIdentity _identity;
    private readonly EdgeLocalData _data;
    private readonly IMqttClientFactory _mqtt;
    private readonly TimeProvider _clock;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly IUpdateTransform? _transform;
    private readonly UpdateEnvelopeSigner _signer;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ErrorFeedbackCompressor? _errorFeedback;

    public EdgeAgent(EdgeAgentOptions options, EdgeDeviceIdentity identity, EdgeLocalData data, IMqttClientFactory? mqtt = null,
        TimeProvider? clock = null, ILoggerFactory? loggers = null, IUpdateTransform? transform = null)
    {
        _options = options;
        _identity = identity;
        _data = data;
        _mqtt = mqtt ?? new MqttNetClientFactory();
        _clock = clock ?? TimeProvider.System;
        _loggers = loggers ?? NullLoggerFactory.Instance;
        _logger = _loggers.CreateLogger<EdgeAgent>();
        _transform = transform;
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

    /// <summary>Runs until cancelled. Throws only for configuration errors (bad data, unusable state directory).</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var state = Path.GetFullPath(_options.StateDirectory);
        Directory.CreateDirectory(state);
        var federation = _identity.Federation;
        var verifier = new ModelAnnouncementVerifier(federation, new VerificationKeyRing(_identity.CloudKey));
        var fsync = _options.Outbox.Fsync;
        using var outbox = new UpdateOutbox(new OutboxOptions
        {
            Directory = Path.Combine(state, OutboxDirectoryName),
            MaxItems = _options.Outbox.MaxItems,
            MaxBytes = _options.Outbox.MaxBytes,
            Fsync = fsync,
        }, _loggers.CreateLogger<UpdateOutbox>(), _clock);
        var store = new ModelStore(Path.Combine(state, ModelDirectoryName), verifier, fsync, _loggers.CreateLogger<ModelStore>());
        var errorFeedbackStore = new ErrorFeedbackStore(Path.Combine(state, ErrorFeedbackFileName), fsync, _loggers.CreateLogger<ErrorFeedbackStore>());
        var progressPath = Path.Combine(state, ProgressFileName);
        var progress = AgentProgress.Load(progressPath);
        var stored = store.TryLoad();
        if (stored is not null)
            LogRestoredModel(stored.Version, progress.LastTrainedVersion);

        await using var link = new MqttLink(LinkOptions(), _mqtt, _loggers.CreateLogger<MqttLink>(), _clock);
        var receiver = new ModelReceiver(federation, verifier, link, stored?.Version ?? -1, _loggers.CreateLogger<ModelReceiver>(), Statistics);
        var maxFrame = _options.Compression.MaxFrameBytes;
        var sender = new OutboxSender(outbox, link, MqttTopics.Update(federation, _identity.DeviceId),
            item => [.. UpdateFramer.Frame(item.Payload.Span, Convert.FromHexString(item.UpdateId), maxFrame).Select(f => (ReadOnlyMemory<byte>)f)],
            _loggers.CreateLogger<OutboxSender>(), _clock);
        using var trainer = new LocalTrainer(_options.Training, _data.Train, _data.Test, _options.Data.MaxEvaluationSamples, _loggers.CreateLogger<LocalTrainer>());
        (Outbox, Link, Sender) = (outbox, link, sender);

        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await link.StartAsync(stopping.Token).ConfigureAwait(false);
        var sending = sender.RunAsync(stopping.Token);
        var receiving = receiver.RunAsync(stopping.Token);
        _started.TrySetResult();
        LogStarted(_identity.DeviceId, federation, state, _data.Train.Count);
        try
        {
            var next = stored is not null && stored.Version > progress.LastTrainedVersion ? stored : null;
            while (true)
            {
                VerifiedModel model;
                if (next is not null)
                {
                    model = next;
                    next = null;
                }
                else
                {
                    model = await receiver.Verified.ReadAsync(stopping.Token).ConfigureAwait(false);
                    Statistics.ModelVerified();
                    store.Save(model);
                }
                if (model.Version <= progress.LastTrainedVersion)
                    continue;
                if (outbox.Count >= _options.Outbox.MaxItems)
                {
                    Statistics.UpdateRefused();
                    LogSkippedOutboxFull(model.Version, outbox.Count);
                    continue;
                }
                LocalRoundResult trained;
                try
                {
                    trained = await Task.Run(() => trainer.Train(model, stopping.Token), stopping.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // A model this device cannot train (wrong input shape, unsupported operator) must not stop
                    // the agent: the next version may be fine, and the link keeps reporting the device online.
                    LogTrainingFailed(e, model.Version);
                    continue;
                }
                Statistics.TrainingSessionBuilds = trainer.SessionBuilds;
                var report = await PublishRoundAsync(model, trained, outbox, errorFeedbackStore, stopping.Token).ConfigureAwait(false);
                progress = progress with { LastTrainedVersion = model.Version, Rounds = progress.Rounds + 1 };
                progress.Save(progressPath, fsync);
                Statistics.RoundCompleted();
                RoundCompleted?.Invoke(report);
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

    /// <summary>Compress (with error feedback), sign and queue one round's update.</summary>
    private async Task<EdgeRoundReport> PublishRoundAsync(VerifiedModel model, LocalRoundResult trained, UpdateOutbox outbox, ErrorFeedbackStore errorFeedbackStore, CancellationToken cancellationToken)
    {
        if (!double.IsFinite(trained.Loss))
        {
            Statistics.UpdateRefused();
            return Report(trained, null, 0, 0);
        }
        var delta = trained.Delta;
        _transform?.Apply(delta, model.Version);
        var codecSpec = string.IsNullOrWhiteSpace(_options.Compression.Codec)
            ? model.Announcement.CodecHints.FirstOrDefault() ?? "fp32"
            : _options.Compression.Codec;
        var codec = UpdateCodecs.Parse(codecSpec);
        var kind = ErrorFeedbackCompressor.ParseKind(_options.Compression.ErrorFeedback);
        if (_errorFeedback is null || _errorFeedback.Kind != kind || _errorFeedback.Codec.Spec != codec.Spec || _errorFeedback.Dimension != delta.Length)
            _errorFeedback = errorFeedbackStore.LoadOrCreate(kind, codec, delta.Length, _options.Compression.EControlEta);

        // If the update cannot be queued, the memory must not count it as sent: keep a copy to roll back to.
        var before = ErrorFeedbackState.Serialize(_errorFeedback);
        var payload = _errorFeedback.Compress(delta);
        var updateId = UpdateEnvelopeSigner.NewUpdateId();
        var envelope = new UpdateEnvelope
        {
            Federation = _identity.Federation,
            DeviceId = _identity.DeviceId,
            BaseModelVersion = model.Version,
            UpdateId = updateId,
            SampleCount = trained.SampleCount,
            Codec = codec.Spec,
            Dimension = delta.Length,
            Payload = ByteString.CopyFrom(payload),
            ErrorFeedback = _errorFeedback.Name,
            Metrics = new TrainingMetrics
            {
                Loss = trained.Loss,
                Accuracy = double.IsFinite(trained.Accuracy) ? trained.Accuracy : 0,
                Steps = trained.Steps,
                DurationMs = (long)trained.Duration.TotalMilliseconds,
            },
        };
        var signed = _signer.Sign(envelope, _clock);
        var updateIdHex = Convert.ToHexString(updateId.Span);
        try
        {
            await outbox.EnqueueAsync(updateIdHex, signed, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OutboxFullException or IOException)
        {
            ErrorFeedbackState.TryDeserialize(before, out _errorFeedback);
            Statistics.UpdateRefused();
            LogNotQueued(model.Version, e.Message);
            return Report(trained, null, payload.Length, signed.Length);
        }
        // Queued first, then the memory: a crash in between leaves the memory one round behind, which re-sends
        // part of one message later instead of losing it.
        errorFeedbackStore.Save(_errorFeedback);
        Statistics.UpdateEnqueued();
        LogRound(model.Version, trained.Loss, trained.Accuracy, trained.Steps, trained.Duration.TotalSeconds, codec.Spec, _errorFeedback.Name, payload.Length, updateIdHex);
        return Report(trained, updateIdHex, payload.Length, signed.Length);
    }

    private EdgeRoundReport Report(LocalRoundResult trained, string? updateId, int payloadBytes, int envelopeBytes) =>
        new(_identity.DeviceId, trained.BaseVersion, updateId, trained.Loss, trained.Accuracy, trained.Steps, trained.Duration, payloadBytes, envelopeBytes);

    private MqttLinkOptions LinkOptions()
    {
        var broker = _options.Broker ?? _identity.Broker
            ?? throw new InvalidOperationException($"No broker address for device '{_identity.DeviceId}': set Edge:Broker or pass --broker mqtt://host:port.");
        if (!Uri.TryCreate(broker, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "mqtts" or "tcp" or "ssl" or "tls"))
            throw new InvalidOperationException($"Broker address '{broker}' is not of the form mqtt://host:port.");
        var federation = _identity.Federation;
        var mqtt = _options.Mqtt;
        return new MqttLinkOptions
        {
            Broker = uri,
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
            Subscriptions = [MqttTopics.Model(federation)],
        };
    }

    [LoggerMessage(EventId = 500, Level = LogLevel.Information, Message = "Edge agent {DeviceId} of federation {Federation} started; state in {StateDirectory}; {Samples} local samples")]
    private partial void LogStarted(string deviceId, string federation, string stateDirectory, int samples);

    [LoggerMessage(EventId = 501, Level = LogLevel.Information, Message = "Restored verified model v{Version} from disk (last trained on v{LastTrained})")]
    private partial void LogRestoredModel(long version, long lastTrained);

    [LoggerMessage(EventId = 502, Level = LogLevel.Information, Message = "Round on v{Version}: loss {Loss:F4}, accuracy {Accuracy:P1}, {Steps} steps in {Seconds:F1} s; {Codec}+{ErrorFeedback} payload {PayloadBytes} bytes; update {UpdateId} queued")]
    private partial void LogRound(long version, double loss, double accuracy, long steps, double seconds, string codec, string errorFeedback, int payloadBytes, string updateId);

    [LoggerMessage(EventId = 503, Level = LogLevel.Warning, Message = "Skipped training on v{Version}: the outbox is full ({Count} updates waiting for the broker)")]
    private partial void LogSkippedOutboxFull(long version, int count);

    [LoggerMessage(EventId = 505, Level = LogLevel.Error, Message = "Training on model v{Version} failed; waiting for the next version")]
    private partial void LogTrainingFailed(Exception exception, long version);

    [LoggerMessage(EventId = 504, Level = LogLevel.Error, Message = "Update on v{Version} was not queued and is dropped: {Reason}")]
    private partial void LogNotQueued(long version, string reason);
}
