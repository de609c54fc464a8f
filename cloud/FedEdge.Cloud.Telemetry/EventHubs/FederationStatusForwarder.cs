using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Telemetry.Drift;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>
/// Fleet telemetry for Event Hubs: every <see cref="EventHubsOptions.StatusInterval"/> the status of each federation
/// that has registered devices (model version, pending updates, live devices, accepted/rejected counters, round
/// history) as a "federation-status" event, partitioned by federation. Never waits on the hub (a full backlog refuses).
/// </summary>
public sealed class FederationStatusForwarder(
    EventHubsSink sink,
    IGrainFactory grains,
    Func<IReadOnlyList<string>> listFederations,
    IOptions<EventHubsOptions> options,
    ILogger<FederationStatusForwarder> logger) : BackgroundService
{
    public const string EventType = "federation-status";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.StatusInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                await ForwardAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Queues one status event per federation; returns how many were queued.</summary>
    public async Task<int> ForwardAsync(CancellationToken cancellationToken)
    {
        var queued = 0;
        foreach (var federation in listFederations())
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                var status = await grains.GetGrain<IFederationGrain>(federation).GetStatusAsync();
                if (status.Phase == FederationPhase.NotStarted) continue;
                var at = DateTimeOffset.UtcNow;
                var body = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new { at, status }, DriftEventJson.Options);
                if (sink.TryEnqueue(new EventHubsEvent(federation, body, EventType, $"status-{federation}-{at.ToUnixTimeMilliseconds()}"))) queued++;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning(e, "Status of federation {Federation} not forwarded to Event Hubs", federation);
            }
        }
        return queued;
    }
}
