using FedEdge.Cloud.Telemetry.Drift;
using FedEdge.Cloud.Telemetry.EventHubs;
using FedEdge.Cloud.Telemetry.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MQTTnet;

namespace FedEdge.Cloud.Telemetry.Hosting;

/// <summary>What the telemetry module takes from the cloud that hosts it.</summary>
/// <param name="DataDirectory">The cloud's data directory; the drift history goes to <c>drift-events.db</c> in it, the
/// Event Hubs backlog to <c>eventhubs-backlog/</c>.</param>
/// <param name="SqliteSynchronousFull">Commit drift events with synchronous=FULL (survive power loss, not only a crash).</param>
/// <param name="ListDevices">Registered devices, of one federation or all (null).</param>
/// <param name="Publish">Publishes through the cloud's MQTT connection.</param>
public sealed record CloudTelemetryBindings(
    string DataDirectory,
    bool SqliteSynchronousFull,
    Func<IServiceProvider, string?, IReadOnlyList<DeviceSummary>> ListDevices,
    Func<IServiceProvider, MqttApplicationMessage, CancellationToken, Task> Publish);

/// <summary>Settings of the telemetry module: section "Telemetry".</summary>
public sealed class TelemetryOptions
{
    public const string Section = "Telemetry";

    /// <summary>Path of the drift history; default <c>drift-events.db</c> in the data directory.</summary>
    public string? DriftDatabase { get; set; }

    /// <summary>Publish each drift event on the MQTT topic fededge/{federation}/drift/{deviceId}.</summary>
    public bool PublishDriftEvents { get; set; } = true;

    public TelemetryHttpOptions Http { get; set; } = new();

    public EventHubsOptions EventHubs { get; set; } = new();
}

public static class TelemetryHostExtensions
{
    /// <summary>
    /// Adds drift monitoring to the cloud: the durable drift history (<see cref="SqliteDriftEventStore"/>), the
    /// <see cref="IDriftEventSink"/> that ingestion calls, MQTT drift telemetry, the Event Hubs sink when a
    /// connection string is configured, and the HTTP API when enabled. Options come from the "Telemetry" section,
    /// then <paramref name="configure"/>; bad settings throw here, naming the setting.
    /// </summary>
    public static IHostApplicationBuilder AddFedEdgeTelemetry(this IHostApplicationBuilder builder, CloudTelemetryBindings bindings, Action<TelemetryOptions>? configure = null)
    {
        var options = new TelemetryOptions();
        builder.Configuration.GetSection(TelemetryOptions.Section).Bind(options);
        configure?.Invoke(options);
        options.EventHubs.BacklogDirectory ??= Path.Combine(bindings.DataDirectory, "eventhubs-backlog");
        if (options.Http.Enabled) options.Http.Validate();
        if (options.EventHubs.Enabled) options.EventHubs.Validate();

        var services = builder.Services;
        services.AddSingleton(Options.Create(options.Http));
        services.AddSingleton(Options.Create(options.EventHubs));
        var database = options.DriftDatabase ?? Path.Combine(bindings.DataDirectory, "drift-events.db");
        services.AddSingleton(_ => new SqliteDriftEventStore(database, bindings.SqliteSynchronousFull));
        services.AddSingleton<DriftEventRecorder>();
        services.AddSingleton<IDriftEventSink>(sp => sp.GetRequiredService<DriftEventRecorder>());

        if (options.PublishDriftEvents)
        {
            services.AddSingleton(sp => new MqttDriftEventPublisher(
                (message, cancellationToken) => bindings.Publish(sp, message, cancellationToken), sp.GetRequiredService<ILogger<MqttDriftEventPublisher>>()));
            services.AddSingleton<IDriftEventObserver>(sp => sp.GetRequiredService<MqttDriftEventPublisher>());
            services.AddHostedService(sp => sp.GetRequiredService<MqttDriftEventPublisher>());
        }
        if (options.EventHubs.Enabled)
        {
            services.AddSingleton<EventHubsSink>();
            services.AddHostedService(sp => sp.GetRequiredService<EventHubsSink>());
            services.AddSingleton<IDriftEventObserver, EventHubsDriftForwarder>();
            if (options.EventHubs.StatusInterval > TimeSpan.Zero)
                services.AddHostedService(sp => new FederationStatusForwarder(
                    sp.GetRequiredService<EventHubsSink>(), sp.GetRequiredService<IGrainFactory>(),
                    () => [.. bindings.ListDevices(sp, null).Select(d => d.Federation).Distinct(StringComparer.Ordinal)],
                    sp.GetRequiredService<IOptions<EventHubsOptions>>(), sp.GetRequiredService<ILogger<FederationStatusForwarder>>()));
        }
        if (options.Http.Enabled)
        {
            services.AddSingleton(sp => new TelemetryHttpApi(
                sp.GetRequiredService<IOptions<TelemetryHttpOptions>>(), sp, federation => bindings.ListDevices(sp, federation),
                sp.GetRequiredService<ILogger<TelemetryHttpApi>>()));
            services.AddHostedService(sp => sp.GetRequiredService<TelemetryHttpApi>());
        }
        return builder;
    }
}
