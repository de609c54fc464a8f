using System.Buffers;
using System.Collections.Concurrent;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// A fleet of synthetic devices for a clustered (FedDAA) federation: each device belongs to a known group, and its drift
/// statistics carry a prototype near its group's centre (R = 2 labels × D = 2 outputs), so the cloud's clustering has a
/// known answer. Devices publish signed updates over MQTT like the edge agent and read their retained assignment.
/// </summary>
internal sealed class ClusteringFleet : IAsyncDisposable
{
    public const string Federation = "fc";
    public const int Labels = 2;
    public const int Outputs = 2;

    public static readonly FederationConfig Config = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.Sync,
        RoundDeadline = TimeSpan.FromMinutes(5),
        Clustering = "feddaa",
        WarmupVersions = 1,
        ReclusterEvery = 1,
        MaxClusters = 9,
    };

    private readonly ConcurrentDictionary<string, byte[]> _assignments = new(StringComparer.Ordinal);

    private ClusteringFleet(CloudTestHost cloud, IReadOnlyList<TestDevice> devices, int[] groups, Dictionary<string, (string Password, byte[] Key)> credentials)
    {
        Cloud = cloud;
        Devices = devices;
        Groups = groups;
        Credentials = credentials;
    }

    public CloudTestHost Cloud { get; private set; }
    public IReadOnlyList<TestDevice> Devices { get; private set; }
    /// <summary>The known group of each device.</summary>
    public int[] Groups { get; }
    public Dictionary<string, (string Password, byte[] Key)> Credentials { get; }

    public IFederationGrain Model(int cluster) => Cloud.Grains.GetGrain<IFederationGrain>(ModelGrainKey.For(Federation, cluster));
    public IClusterDirectoryGrain Directory => Cloud.Grains.GetGrain<IClusterDirectoryGrain>(Federation);
    public Ingestion.IngestionMetrics Metrics => Cloud.Services.GetRequiredService<Ingestion.IngestionMetrics>();

    /// <summary>Registers <paramref name="groups"/>.Length devices, starts the clustered federation, subscribes each device to its assignment.</summary>
    public static async Task<ClusteringFleet> StartAsync(string dataDirectory, int[] groups, FederationConfig? config = null)
    {
        var cloud = await CloudTestHost.StartAsync(dataDirectory, configureHost: EnableHttpApi);
        var credentials = new Dictionary<string, (string, byte[])>(StringComparer.Ordinal);
        var devices = new List<TestDevice>();
        for (var i = 0; i < groups.Length; i++)
        {
            var id = $"dev-{i}";
            var (_, password, key) = cloud.Registry.Add(id, Federation);
            credentials[id] = (password, key);
            devices.Add(await TestDevice.ConnectAsync(cloud, id, Federation, password, key));
        }
        var fleet = new ClusteringFleet(cloud, devices, groups, credentials);
        await fleet.Model(0).StartAsync(config ?? Config, new Immutable<byte[]>(TestModels.Logreg()));
        await fleet.SubscribeAssignmentsAsync();
        return fleet;
    }

    /// <summary>Stops the cloud and starts a new one on the same data directory; devices reconnect with their credentials.</summary>
    public async Task RestartAsync(string dataDirectory)
    {
        foreach (var device in Devices) await device.DisposeAsync();
        await Cloud.DisposeAsync();
        _assignments.Clear();
        Cloud = await CloudTestHost.StartAsync(dataDirectory, configureHost: EnableHttpApi);
        var devices = new List<TestDevice>();
        foreach (var (id, (password, key)) in Credentials.OrderBy(c => int.Parse(c.Key[4..], System.Globalization.CultureInfo.InvariantCulture)))
            devices.Add(await TestDevice.ConnectAsync(Cloud, id, Federation, password, key));
        Devices = devices;
        await SubscribeAssignmentsAsync();
    }

    /// <summary>The cloud's HTTP API on a free port, without a key (it serves the clustering).</summary>
    private static void EnableHttpApi(Microsoft.Extensions.Hosting.HostApplicationBuilder builder)
    {
        builder.Configuration["Telemetry:Http:Enabled"] = "true";
        builder.Configuration["Telemetry:Http:Port"] = "0";
    }

    public Uri HttpApi => Cloud.Services.GetRequiredService<Telemetry.Http.TelemetryHttpApi>().Address!;

    private async Task SubscribeAssignmentsAsync()
    {
        foreach (var device in Devices)
        {
            device.Client.ApplicationMessageReceivedAsync += e =>
            {
                if (e.ApplicationMessage.Topic == MqttTopics.ClusterAssignment(Federation, device.Id) && e.ApplicationMessage.Payload.Length > 0)
                    _assignments[device.Id] = e.ApplicationMessage.Payload.ToArray();
                return Task.CompletedTask;
            };
            var result = await device.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                .WithTopicFilter(MqttTopics.ClusterAssignment(Federation, device.Id), MqttQualityOfServiceLevel.AtLeastOnce).Build());
            Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, result.Items.Single().ResultCode);
        }
    }

    private static readonly float[][] Centres = [[10, 0, 0, 10], [0, 10, 10, 0], [0, 0, 10, 10]];

    /// <summary>A prototype near the centre of <paramref name="group"/> (centres ≥ 14 apart, noise ±0.05).</summary>
    public static float[] Prototype(int group, int device) =>
        [.. Enumerable.Range(0, Labels * Outputs).Select(j => Centres[group][j] + (float)(0.05 * Math.Sin(7 * device + j)))];

    /// <summary>Drift statistics of one window of a device in <paramref name="group"/>; cluster weights put 90 % on <paramref name="primary"/>.</summary>
    public static DriftStatistics Statistics(int group, int device, long window, IReadOnlyList<int>? clusters = null, int primary = -1, long epoch = 0)
    {
        var drift = new DriftStatistics
        {
            WindowIndex = window,
            SampleCount = 100,
            LabelCount = Labels,
            OutputDimension = Outputs,
            AssignmentEpoch = epoch,
        };
        drift.Prototype.Add(Prototype(group, device));
        drift.LabelHistogram.Add([60f + 10 * group, 40f - 10 * group]);
        foreach (var c in clusters ?? [])
        {
            var share = c == primary ? 0.9f : 0.1f / Math.Max(1, clusters!.Count - 1);
            drift.Clusters.Add(c);
            drift.ClusterLabelWeights.Add([share * (60f + 10 * group), share * (40f - 10 * group)]);
        }
        return drift;
    }

    /// <summary>Every device sends an update of <paramref name="delta"/> to <paramref name="cluster"/> on <paramref name="baseVersion"/>.</summary>
    public async Task SendAsync(int cluster, long baseVersion, float delta, Func<int, DriftStatistics?>? drift = null)
    {
        var d = (await Model(0).GetStatusAsync()).ParameterCount;
        for (var i = 0; i < Devices.Count; i++)
        {
            var statistics = drift?.Invoke(i);
            await Devices[i].PublishEnvelopeAsync(Devices[i].SignedUpdate(Enumerable.Repeat(delta, d).ToArray(), baseVersion, configure: e =>
            {
                e.Cluster = cluster;
                if (statistics is not null) e.Drift = statistics;
            }));
        }
    }

    public async Task WaitForVersionAsync(int cluster, long version) =>
        await Eventually.HoldsAsync(async () => (await Model(cluster).GetStatusAsync()).ModelVersion >= version, $"cluster {cluster} to reach v{version}", TimeSpan.FromSeconds(30));

    public async Task<ClusteringStatus> WaitForEpochAsync(long epoch)
    {
        await Eventually.HoldsAsync(async () => (await Directory.GetStatusAsync()).Epoch >= epoch, $"clustering epoch {epoch}", TimeSpan.FromSeconds(30));
        return await Directory.GetStatusAsync();
    }

    /// <summary>Each device's retained assignment of <paramref name="epoch"/>, verified as a device verifies it (cloud key, own id).</summary>
    public async Task<Dictionary<string, ClusterAssignment>> AssignmentsAsync(long epoch)
    {
        var cloudKey = new VerificationKeyRing(new VerificationKey(CloudSigningKey.KeyId, Cloud.Services.GetRequiredService<CloudSigningKey>().PublicKey));
        var verified = new Dictionary<string, ClusterAssignment>(StringComparer.Ordinal);
        await Eventually.HoldsAsync(() =>
        {
            verified.Clear();
            foreach (var device in Devices)
            {
                if (!_assignments.TryGetValue(device.Id, out var bytes)) return Task.FromResult(false);
                var result = new ClusterAssignmentVerifier(Federation, device.Id, cloudKey).Verify(bytes);
                Assert.True(result.IsAccepted, $"{device.Id}: {result.Reason} {result.Message}");
                if (result.Value.Epoch != epoch) return Task.FromResult(false);
                verified[device.Id] = result.Value;
            }
            return Task.FromResult(true);
        }, $"every device's assignment of epoch {epoch}", TimeSpan.FromSeconds(30));
        return verified;
    }

    public static int Primary(ClusterAssignment assignment) => assignment.Clusters.MaxBy(c => c.Prior)!.Cluster;

    public async ValueTask DisposeAsync()
    {
        foreach (var device in Devices) await device.DisposeAsync();
        await Cloud.DisposeAsync();
    }
}
