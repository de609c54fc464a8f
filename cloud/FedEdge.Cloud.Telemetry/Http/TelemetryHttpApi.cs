using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Telemetry.Drift;
using FedEdge.Protocol.Messages;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FedEdge.Cloud.Telemetry.Http;

/// <summary>
/// The cloud's HTTP API (JSON), a small Kestrel server started as a hosted service of the cloud's generic host:
/// <list type="bullet">
/// <item><c>GET /healthz</c>: liveness, no key needed.</item>
/// <item><c>GET /api/federations/{id}</c>: the federation grain's status (404 when never started).</item>
/// <item><c>GET /api/federations/{id}/clusters</c>: a clustered (FedDAA) federation's clustering (epoch, k, clusters,
/// assignments, silhouettes) and the status of each live cluster model (404 when the federation is not clustered).</item>
/// <item><c>GET /api/federations/{id}/drift-events?device=&amp;since=&amp;until=&amp;kind=&amp;after=&amp;limit=</c>: drift history, oldest first.</item>
/// <item><c>GET /api/devices?federation=</c>: registered devices, without secrets.</item>
/// </list>
/// </summary>
public sealed class TelemetryHttpApi(
    IOptions<TelemetryHttpOptions> options,
    IServiceProvider services,
    Func<string?, IReadOnlyList<DeviceSummary>> listDevices,
    ILogger<TelemetryHttpApi> logger) : IHostedService, IAsyncDisposable
{
    private readonly TelemetryHttpOptions _options = options.Value;
    private WebApplication? _app;

    /// <summary>The address the API listens on, once started (with the real port when the option was 0).</summary>
    public Uri? Address { get; private set; }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var address = _options.Validate();
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "FedEdge.Cloud.Telemetry" });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(address, _options.Port));
        builder.Services.AddRoutingCore();
        builder.Services.AddSingleton(services.GetRequiredService<ILoggerFactory>());
        builder.Services.AddLogging();
        builder.Services.ConfigureHttpJsonOptions(json =>
        {
            foreach (var converter in DriftEventJson.Options.Converters) json.SerializerOptions.Converters.Add(converter);
        });
        var app = builder.Build();
        if (!string.IsNullOrEmpty(_options.ApiKey)) app.Use(RequireApiKey(_options.ApiKey));
        Map(app);
        await app.StartAsync(cancellationToken);
        _app = app;
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Address = new Uri(bound.Replace("[::]", "localhost", StringComparison.Ordinal));
        logger.LogInformation("Cloud HTTP API listening on {Address} (API key {Required})", Address, string.IsNullOrEmpty(_options.ApiKey) ? "not required" : "required");
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is not null) await _app.StopAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }

    private void Map(WebApplication app)
    {
        app.MapGet("/healthz", () => Results.Json(new { status = "ok" }));

        app.MapGet("/api/federations/{id}", async (string id) =>
        {
            if (!Identifiers.IsValid(id)) return Problem(StatusCodes.Status400BadRequest, $"federation id '{id}' is not valid");
            var status = await services.GetRequiredService<IGrainFactory>().GetGrain<IFederationGrain>(id).GetStatusAsync();
            return status.Phase == FederationPhase.NotStarted
                ? Problem(StatusCodes.Status404NotFound, $"federation '{id}' has not been started")
                : Results.Json(status, DriftEventJson.Options);
        });

        app.MapGet("/api/federations/{id}/clusters", async (string id) =>
        {
            if (!Identifiers.IsValid(id)) return Problem(StatusCodes.Status400BadRequest, $"federation id '{id}' is not valid");
            var grains = services.GetRequiredService<IGrainFactory>();
            var status = await grains.GetGrain<IFederationGrain>(id).GetStatusAsync();
            if (status.Config is not { IsClustered: true })
                return Problem(StatusCodes.Status404NotFound, $"federation '{id}' is not a started clustered federation");
            var clustering = await grains.GetGrain<IClusterDirectoryGrain>(id).GetStatusAsync();
            var models = await Task.WhenAll(clustering.Clusters.Where(c => c.IsLive)
                .Select(c => grains.GetGrain<IFederationGrain>(ModelGrainKey.For(id, c.Cluster)).GetStatusAsync()));
            return Results.Json(new { clustering, models }, DriftEventJson.Options);
        });

        app.MapGet("/api/federations/{id}/drift-events", async (string id, HttpRequest request, CancellationToken cancellationToken) =>
        {
            if (!Identifiers.IsValid(id)) return Problem(StatusCodes.Status400BadRequest, $"federation id '{id}' is not valid");
            DriftEventQuery query;
            try
            {
                query = ParseQuery(id, request.Query);
            }
            catch (FormatException e)
            {
                return Problem(StatusCodes.Status400BadRequest, e.Message);
            }
            var events = await services.GetRequiredService<SqliteDriftEventStore>().QueryAsync(query, cancellationToken);
            return Results.Json(events, DriftEventJson.Options);
        });

        app.MapGet("/api/devices", (string? federation) =>
        {
            if (federation is not null && !Identifiers.IsValid(federation))
                return Problem(StatusCodes.Status400BadRequest, $"federation '{federation}' is not valid");
            return Results.Json(listDevices(federation), DriftEventJson.Options);
        });
    }

    /// <summary>Reads device, since, until (ISO 8601 or unix milliseconds), kind, after and limit; the error names the parameter.</summary>
    internal static DriftEventQuery ParseQuery(string federation, IQueryCollection query)
    {
        string? One(string name) => query.TryGetValue(name, out var values) ? values.Count == 1 ? values[0] : throw new FormatException($"query parameter '{name}' is given more than once") : null;

        var device = One("device");
        if (device is not null && !Identifiers.IsValid(device)) throw new FormatException($"query parameter 'device': '{device}' is not a device id");
        DriftKind? kind = One("kind") switch
        {
            null => null,
            "real" => DriftKind.Real,
            "virtual" => DriftKind.Virtual,
            "label" => DriftKind.Label,
            var other => throw new FormatException($"query parameter 'kind': '{other}' is not real, virtual or label"),
        };
        return new DriftEventQuery
        {
            Federation = federation,
            DeviceId = device,
            Since = Time(One("since"), "since"),
            Until = Time(One("until"), "until"),
            Kind = kind,
            AfterId = One("after") is { } after ? Integer(after, "after", 0, long.MaxValue) : 0,
            Limit = One("limit") is { } limit ? (int)Integer(limit, "limit", 1, DriftEventQuery.MaxLimit) : 1000,
        };
    }

    private static DateTimeOffset? Time(string? value, string name)
    {
        if (value is null) return null;
        if (long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var unixMs))
            return DateTimeOffset.FromUnixTimeMilliseconds(unixMs);
        if (DateTimeOffset.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var time))
            return time;
        throw new FormatException($"query parameter '{name}': '{value}' is neither an ISO 8601 time nor unix milliseconds");
    }

    private static long Integer(string value, string name, long min, long max) =>
        long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var result) && result >= min && result <= max
            ? result
            : throw new FormatException($"query parameter '{name}': '{value}' is not an integer in {min}..{max}");

    private static IResult Problem(int status, string detail) => Results.Problem(detail: detail, statusCode: status);

    private static Func<HttpContext, RequestDelegate, Task> RequireApiKey(string apiKey)
    {
        var expected = Encoding.UTF8.GetBytes(apiKey);
        return (context, next) =>
        {
            if (context.Request.Path.Equals("/healthz", StringComparison.Ordinal)) return next(context);
            var given = context.Request.Headers[TelemetryHttpOptions.ApiKeyHeader].ToString();
            if (given.Length > 0 && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), expected)) return next(context);
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            context.Response.Headers.WWWAuthenticate = TelemetryHttpOptions.ApiKeyHeader;
            return context.Response.WriteAsJsonAsync(new { title = "Unauthorized", status = 401, detail = $"missing or wrong {TelemetryHttpOptions.ApiKeyHeader} header" });
        };
    }
}
