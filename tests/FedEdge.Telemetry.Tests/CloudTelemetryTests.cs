using System.Buffers;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using FedEdge.Cloud;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Security;
using FedEdge.Cloud.Telemetry.Drift;
using FedEdge.Cloud.Telemetry.EventHubs;
using FedEdge.Cloud.Telemetry.Http;
using FedEdge.Compression;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Telemetry.Tests;

/// <summary>
/// The whole path in a real cloud (Orleans silo, embedded broker): a device's signed update carries a drift report;
/// the cloud stores the event, publishes it on MQTT, serves it on the HTTP API and keeps it in its Event Hubs backlog
/// while the hub (<see cref="EventHubsEmulator"/>) is down; the cloud restarts, the hub returns, and the event (with
/// the federation's status) reaches the hub once.
/// </summary>
public sealed class CloudTelemetryTests : IDisposable
{
    private const string ApiKey = "test-api-key-0123456789";
    private static readonly FederationConfig Config = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.Sync,
        RoundDeadline = TimeSpan.FromMinutes(5),
    };

    private readonly string _data = Path.Combine(Path.GetTempPath(), "fededge-telemetry-tests", Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task Drift_report_in_an_update_is_stored_published_served_and_forwarded_after_a_hub_outage_and_a_restart()
    {
        var detectedMs = DateTimeOffset.UtcNow.AddSeconds(-5).ToUnixTimeMilliseconds();
        var brokerPort = TestPorts.Reserve();
        await using var hub = new EventHubsEmulator("fleet", partitionCount: 4); // down until the cloud restarts
        DriftEvent fromMqtt;
        {
            await using (var cloud = await StartCloudAsync(brokerPort, hub.ConnectionString))
            {
                var api = cloud.Services.GetRequiredService<TelemetryHttpApi>().Address!;
                using var http = new HttpClient { BaseAddress = api };
                var (_, password, privateKey) = cloud.Services.GetRequiredService<DeviceRegistry>().Add("dev-1", "f1");
                var status = await cloud.Services.GetRequiredService<IGrainFactory>().GetGrain<IFederationGrain>("f1")
                    .StartAsync(Config, new Orleans.Concurrency.Immutable<byte[]>(FedEdge.Training.Zoo.ModelZoo.Create("logreg", [4], classes: 2, seed: 1).ToByteArray()));

                // An operator's MQTT subscription to the federation's drift events (as the cloud's service identity).
                var service = cloud.Services.GetRequiredService<ServiceIdentity>();
                using var watcher = await ConnectAsync(brokerPort, "drift-watcher", service.UserName, service.Password);
                var published = new TaskCompletionSource<MqttApplicationMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
                watcher.ApplicationMessageReceivedAsync += args => { published.TrySetResult(args.ApplicationMessage); return Task.CompletedTask; };
                await watcher.SubscribeAsync(MqttTopics.DriftEventFilter("f1"), MqttQualityOfServiceLevel.AtLeastOnce);

                using var device = await ConnectAsync(brokerPort, "dev-1", "dev-1", password);
                using var key = SigningKeyPair.FromPrivateKey("dev-1", privateKey);
                var report = new DriftReport
                {
                    Kind = DriftKind.Real,
                    WindowIndex = 3,
                    DetectedUnixMs = detectedMs,
                    PreviousCentre = 0,
                    CurrentCentre = 2,
                    LabelShift = 0.04,
                    FeatureShift = 0.12,
                    SampleCount = 256,
                };
                var frame = SignedFrame(key, status.ParameterCount, report);
                await PublishAsync(device, frame);

                // MQTT: the JSON event on fededge/f1/drift/dev-1.
                var message = await published.Task.WaitAsync(TimeSpan.FromSeconds(20));
                Assert.Equal(MqttTopics.DriftEvent("f1", "dev-1"), message.Topic);
                Assert.Equal("application/json", message.ContentType);
                fromMqtt = DriftEventJson.Deserialize(message.Payload.ToArray());
                Assert.Equal((DriftKind.Real, "dev-1", 3L, 2, 0L), (fromMqtt.Kind, fromMqtt.DeviceId, fromMqtt.WindowIndex, fromMqtt.CurrentCentre, fromMqtt.ModelVersion));
                Assert.Equal(detectedMs, fromMqtt.DetectedAt.ToUnixTimeMilliseconds());

                // Event Hubs is down: the event and the federation's status wait in the backlog on disk.
                var sink = cloud.Services.GetRequiredService<EventHubsSink>();
                await Eventually.HoldsAsync(() => sink.Retries >= 1 && sink.Queued >= 2, () => $"failed sends with the drift and a status event queued (queued {sink.Queued}, retries {sink.Retries})", 60);

                // The same update again (a redelivery or a replay) adds no second event.
                await PublishAsync(device, frame);
                var metrics = cloud.Services.GetRequiredService<FedEdge.Cloud.Ingestion.IngestionMetrics>();
                await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.Replay) == 1), "the replay to be refused");
                Assert.Equal(1, await cloud.Services.GetRequiredService<SqliteDriftEventStore>().CountAsync("f1"));

                // HTTP API: key required except on /healthz; no secrets; status from the grain; drift events by device and time.
                Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
                Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/devices")).StatusCode);
                http.DefaultRequestHeaders.Add(TelemetryHttpOptions.ApiKeyHeader, ApiKey);

                var devicesJson = await http.GetStringAsync("/api/devices");
                Assert.Contains("\"deviceId\":\"dev-1\"", devicesJson, StringComparison.Ordinal);
                Assert.DoesNotContain("password", devicesJson, StringComparison.OrdinalIgnoreCase);
                Assert.DoesNotContain("publicKey", devicesJson, StringComparison.OrdinalIgnoreCase);
                Assert.Empty((await http.GetFromJsonAsync<List<DeviceSummary>>("/api/devices?federation=other"))!);

                using var federation = JsonDocument.Parse(await http.GetStringAsync("/api/federations/f1"));
                Assert.Equal("f1", federation.RootElement.GetProperty("federation").GetString());
                Assert.Equal("collecting", federation.RootElement.GetProperty("phase").GetString());
                Assert.Equal(status.ParameterCount, federation.RootElement.GetProperty("parameterCount").GetInt32());
                Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/api/federations/never-started")).StatusCode);

                var events = await GetEventsAsync(http, $"/api/federations/f1/drift-events?device=dev-1&since={detectedMs}");
                Assert.Equal([fromMqtt], events);
                Assert.Empty(await GetEventsAsync(http, $"/api/federations/f1/drift-events?since={Uri.EscapeDataString(DateTimeOffset.FromUnixTimeMilliseconds(detectedMs + 1).ToString("O"))}"));
                Assert.Empty(await GetEventsAsync(http, "/api/federations/f1/drift-events?kind=label"));
                var bad = await http.GetAsync("/api/federations/f1/drift-events?since=yesterday");
                Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
                Assert.Contains("since", await bad.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }

            // A restart of the cloud keeps the drift history and the Event Hubs backlog; the hub returns.
            await using (var cloud = await StartCloudAsync(TestPorts.Reserve(), hub.ConnectionString))
            {
                using var http = new HttpClient { BaseAddress = cloud.Services.GetRequiredService<TelemetryHttpApi>().Address };
                http.DefaultRequestHeaders.Add(TelemetryHttpOptions.ApiKeyHeader, ApiKey);
                var events = await GetEventsAsync(http, "/api/federations/f1/drift-events");
                var kept = Assert.Single(events);
                Assert.Equal((DriftKind.Real, "dev-1", 0.12), (kept.Kind, kept.DeviceId, kept.FeatureShift));

                var sink = cloud.Services.GetRequiredService<EventHubsSink>();
                var carried = sink.Queued;
                Assert.True(carried >= 2, $"the backlog of the first run should be pending (queued {carried})");
                await hub.StartAsync();
                await Eventually.HoldsAsync(() => hub.Count >= carried, () => $"the {carried} events of the first run at the hub (has {hub.Count})", 60);

                // Event Hubs: the same event, partitioned by device; the federation's status partitioned by federation.
                // Delivery is at least once (a send whose acknowledgement is lost is sent again): consumers drop copies
                // by message id, as done here, and no event may arrive more than twice.
                var atHub = hub.AllEvents().DistinctBy(e => e.MessageId).ToList();
                Assert.True(hub.AllEvents().GroupBy(e => e.MessageId).Max(g => g.Count()) <= 2, "an event arrived more than twice");
                var forwarded = Assert.Single(atHub, e => Equals(e.Properties["fededge-type"], EventHubsDriftForwarder.EventType));
                Assert.Equal("dev-1", forwarded.PartitionKey);
                Assert.Equal($"drift-f1-{fromMqtt.Id}", forwarded.MessageId);
                Assert.Equal("application/json", forwarded.ContentType);
                Assert.Equal(fromMqtt, DriftEventJson.Deserialize(forwarded.Body));
                var statusEvent = atHub.First(e => Equals(e.Properties["fededge-type"], FederationStatusForwarder.EventType));
                Assert.Equal("f1", statusEvent.PartitionKey);
                using var statusJson = JsonDocument.Parse(statusEvent.Body);
                Assert.True(statusJson.RootElement.GetProperty("status").GetProperty("parameterCount").GetInt32() > 0);
                Assert.All(atHub, e => Assert.Contains(e.Properties["fededge-type"], new object[] { EventHubsDriftForwarder.EventType, FederationStatusForwarder.EventType }));
            }
        }
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private async Task<RunningCloud> StartCloudAsync(int brokerPort, string? eventHubs)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Configuration["Telemetry:Http:Enabled"] = "true";
        builder.Configuration["Telemetry:Http:Port"] = "0";
        builder.Configuration["Telemetry:Http:ApiKey"] = ApiKey;
        if (eventHubs is not null)
        {
            builder.Configuration["Telemetry:EventHubs:ConnectionString"] = eventHubs;
            builder.Configuration["Telemetry:EventHubs:StatusInterval"] = "00:00:01";
            builder.Configuration["Telemetry:EventHubs:MaxRetries"] = "1";
            builder.Configuration["Telemetry:EventHubs:SendTimeout"] = "00:00:05";
            builder.Configuration["Telemetry:EventHubs:InitialRetryDelay"] = "00:00:00.100";
            builder.Configuration["Telemetry:EventHubs:MaxRetryDelay"] = "00:00:01";
            builder.Configuration["Telemetry:EventHubs:DrainTimeout"] = "00:00:00.500";
        }
        builder.AddFedEdgeCloud(o =>
        {
            o.DataDirectory = _data;
            o.UseLoopback(brokerPort);
            (o.SiloPort, o.GatewayPort) = (TestPorts.Reserve(), TestPorts.Reserve()); // below the ephemeral range, like every test port
            o.SqliteSynchronousFull = false;
        });
        var host = builder.Build();
        await host.StartAsync();
        return new RunningCloud(host);
    }

    private sealed class RunningCloud(IHost host) : IAsyncDisposable
    {
        public IServiceProvider Services => host.Services;

        public async ValueTask DisposeAsync()
        {
            try
            {
                await host.StopAsync(TimeSpan.FromSeconds(20));
            }
            finally
            {
                if (host is IAsyncDisposable asyncDisposable) await asyncDisposable.DisposeAsync();
                else host.Dispose();
            }
        }
    }

    private static async Task<List<DriftEvent>> GetEventsAsync(HttpClient http, string path) =>
        JsonSerializer.Deserialize<List<DriftEvent>>(await http.GetStringAsync(path), DriftEventJson.Options)!;

    private static byte[] SignedFrame(SigningKeyPair key, int dimension, DriftReport report)
    {
        var envelope = new UpdateEnvelope
        {
            Federation = "f1",
            DeviceId = "dev-1",
            BaseModelVersion = 0,
            SampleCount = 256,
            Codec = "fp32",
            Dimension = dimension,
            Payload = ByteString.CopyFrom(Fp32Codec.Instance.Encode(new float[dimension])),
            UpdateId = UpdateEnvelopeSigner.NewUpdateId(),
            DriftReport = report,
        };
        var signed = new UpdateEnvelopeSigner(key).Sign(envelope);
        return new UpdateFrame { Envelope = UpdateEnvelope.Parser.ParseFrom(signed) }.ToByteArray();
    }

    private static async Task<IMqttClient> ConnectAsync(int port, string clientId, string user, string password)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var result = await client.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithClientId(clientId)
            .WithCredentials(user, password).WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V500).Build());
        Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
        return client;
    }

    private static async Task PublishAsync(IMqttClient device, byte[] frame)
    {
        var result = await device.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Update("f1", "dev-1"))
            .WithPayload(frame).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.True(result.IsSuccess, result.ReasonCode.ToString());
    }
}
