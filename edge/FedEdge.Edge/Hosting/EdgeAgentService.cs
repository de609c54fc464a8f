using FedEdge.Edge.Drift;
using FedEdge.Edge.Identity;
using FedEdge.Edge.Mqtt;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FedEdge.Edge.Hosting;

/// <summary>
/// The generic-host face of one <see cref="EdgeAgent"/>: loads the device credentials and the local data named
/// in <see cref="EdgeAgentOptions"/>, then runs the agent until the host stops. All behaviour lives in
/// <see cref="EdgeAgent"/>, so a simulator can host many agents without this class.
/// </summary>
public sealed partial class EdgeAgentService(IOptions<EdgeAgentOptions> options, IMqttClientFactory mqtt, TimeProvider clock, ILoggerFactory loggers)
    : BackgroundService
{
    private readonly ILogger _logger = loggers.CreateLogger<EdgeAgentService>();

    /// <summary>The running agent (null until credentials and data are loaded).</summary>
    public EdgeAgent? Agent { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        using var identity = EdgeDeviceIdentity.Load(settings.CredentialsPath!);
        LogLoadingData(settings.Data.WindowDirectory ?? settings.Data.Source!, identity.DeviceId);
        var windows = await Task.Run(() => OpenData(settings.Data), stoppingToken).ConfigureAwait(false);
        Agent = new EdgeAgent(settings, identity, windows, mqtt, clock, loggers);
        await Agent.RunAsync(stoppingToken).ConfigureAwait(false);
    }

    /// <summary>A window directory when one is set (new windows picked up while running), else the one static data set.</summary>
    private static IEdgeDataWindows OpenData(EdgeDataOptions data) =>
        string.IsNullOrWhiteSpace(data.WindowDirectory) ? new FixedDataWindow(EdgeLocalData.Load(data)) : new DirectoryDataWindows(data.WindowDirectory);

    [LoggerMessage(EventId = 600, Level = LogLevel.Information, Message = "Loading local data {Source} for device {DeviceId}")]
    private partial void LogLoadingData(string source, string deviceId);
}

/// <summary>Checks at start-up what the agent cannot run without, naming the setting.</summary>
public sealed class EdgeAgentOptionsValidator : IValidateOptions<EdgeAgentOptions>
{
    public ValidateOptionsResult Validate(string? name, EdgeAgentOptions options)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.CredentialsPath))
            errors.Add("Edge:CredentialsPath is not set (pass --credentials device.json).");
        else if (!File.Exists(options.CredentialsPath))
            errors.Add($"Edge:CredentialsPath '{options.CredentialsPath}' does not exist.");
        if (string.IsNullOrWhiteSpace(options.Data.Source) && string.IsNullOrWhiteSpace(options.Data.WindowDirectory))
            errors.Add("Edge:Data:Source is not set (pass --data fashion-mnist|npy:X.npy,Y.npy|csv:file.csv), nor Edge:Data:WindowDirectory.");
        else if (!string.IsNullOrWhiteSpace(options.Data.WindowDirectory) && !Directory.Exists(options.Data.WindowDirectory))
            errors.Add($"Edge:Data:WindowDirectory '{options.Data.WindowDirectory}' does not exist.");
        if (options.Drift.MaxStatisticsSamples < 1)
            errors.Add($"Edge:Drift:MaxStatisticsSamples must be at least 1, got {options.Drift.MaxStatisticsSamples}.");
        if (!(options.Drift.LabelShift is >= 0 and <= 1))
            errors.Add($"Edge:Drift:LabelShift is a total-variation distance in [0, 1], got {options.Drift.LabelShift}.");
        if (!(options.Drift.FeatureShift >= 0))
            errors.Add($"Edge:Drift:FeatureShift must be non-negative, got {options.Drift.FeatureShift}.");
        if (string.IsNullOrWhiteSpace(options.StateDirectory))
            errors.Add("Edge:StateDirectory is empty.");
        if (options.Training.LocalEpochs < 1)
            errors.Add($"Edge:Training:LocalEpochs must be at least 1, got {options.Training.LocalEpochs}.");
        if (options.Training.BatchSize < 1)
            errors.Add($"Edge:Training:BatchSize must be at least 1, got {options.Training.BatchSize}.");
        if (!string.IsNullOrWhiteSpace(options.Compression.Codec) && !FedEdge.Compression.UpdateCodecs.TryParse(options.Compression.Codec, out _, out var codecError))
            errors.Add($"Edge:Compression:Codec: {codecError}");
        try
        {
            FedEdge.Compression.ErrorFeedback.ErrorFeedbackCompressor.ParseKind(options.Compression.ErrorFeedback);
        }
        catch (FormatException e)
        {
            errors.Add($"Edge:Compression:ErrorFeedback: {e.Message}");
        }
        if (options.Outbox.MaxItems < 1 || options.Outbox.MaxBytes < 1)
            errors.Add("Edge:Outbox:MaxItems and MaxBytes must be positive.");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
