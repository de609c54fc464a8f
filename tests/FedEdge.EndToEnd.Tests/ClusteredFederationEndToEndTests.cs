using System.Collections.Concurrent;
using System.Text.Json;
using FedEdge.Cloud;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Security;
using FedEdge.Cloud.Telemetry.Drift;
using FedEdge.Cloud.Telemetry.Http;
using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge;
using FedEdge.Edge.Drift;
using FedEdge.Edge.Identity;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using FedEdge.Training.Zoo;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Xunit.Abstractions;

namespace FedEdge.EndToEnd.Tests;

/// <summary>
/// FedDAA over the product path: the whole cloud (Orleans silo, embedded MQTT broker, cluster directory, drift store)
/// and real <see cref="EdgeAgent"/>s with drift monitoring on, talking signed MQTT over loopback. Two groups of devices
/// hold two concepts of the same inputs (group B's labels are y → C−1−y); the cloud must find the two groups, train one
/// cluster model per group, and follow devices whose concept changes; a cloud restart must keep all of it.
/// </summary>
public sealed class ClusteredFederationEndToEndTests(ITestOutputHelper output)
{
    private const string Federation = "daa";
    private const int Devices = 8;
    private const int Features = 16;
    private const int Classes = 4;
    private const int WindowSamples = 160;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>Devices 0–3 hold concept A, 4–7 concept B; devices 0 and 1 move to concept B (real drift).</summary>
    private static bool InGroupB(int device) => device >= Devices / 2;

    private static readonly int[] Drifting = [0, 1];

    private static readonly FederationConfig Config = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rule = "mean",
        Rounds = 0,
        Mode = FederationMode.Sync,
        // Longer than the test's patience (90 s): every round must close on its quorum. A device none of whose samples
        // drew a cluster declines that version (a signed, empty update), which counts towards the quorum; without
        // declines each cluster round would wait for this deadline and the test would time out.
        RoundDeadline = TimeSpan.FromMinutes(2),
        MinUpdates = 1,
        Seed = 5,
        Clustering = "feddaa",
        WarmupVersions = 2,
        ReclusterEvery = 2,
        MaxClusters = 4,
    };

    [Fact]
    public async Task TwoConceptsGetTwoClusterModels_DriftedDevicesReportRealDriftAndMove_AndACloudRestartKeepsTheClustering()
    {
        Assert.True(MosquittoServer.IsInstalled, MosquittoServer.InstallHint);
        var root = Path.Combine(Path.GetTempPath(), "fededge-e2e-daa-" + Guid.NewGuid().ToString("N"));
        var data = new CloudDataDirectory(Path.Combine(root, "cloud"));
        System.IO.Directory.CreateDirectory(data.Root);
        var brokerPort = TestPorts.Reserve();
        var agents = new List<RunningAgent>();
        using var stop = new CancellationTokenSource();
        MosquittoServer? broker = null;
        IHost? cloud = null;
        try
        {
            // The fleet, registered before anything connects; Mosquitto authenticates it from the exported files. The
            // broker outlives the cloud, as in production: updates queued in the cloud's persistent session while the
            // cloud restarts are delivered to the new one (an embedded broker would lose them with the old process).
            var registry = new DeviceRegistry(data.RegistryDatabase);
            var credentials = Enumerable.Range(0, Devices).Select(i => registry.Add($"dev-{i}", Federation)).ToList();
            var passwordFile = Path.Combine(data.Root, "mosquitto.passwd");
            var aclFile = Path.Combine(data.Root, "mosquitto.acl");
            MosquittoConfigWriter.Write(registry, ServiceIdentity.LoadOrCreate(data.ServiceCredentials), passwordFile, aclFile);
            broker = await MosquittoServer.StartAsync(new MosquittoOptions { Directory = data.Root, Port = brokerPort, PasswordFile = passwordFile, AclFile = aclFile });
            cloud = await StartCloudAsync(data.Root, brokerPort);
            var cloudKey = new VerificationKey("cloud", cloud.Services.GetRequiredService<CloudSigningKey>().PublicKey);
            var initialModel = ModelZoo.Create("logreg", [Features], Classes, seed: 1).ToByteArray();
            await Grains(cloud).GetGrain<IFederationGrain>(Federation).StartAsync(Config, new Immutable<byte[]>(initialModel));
            for (var i = 0; i < Devices; i++)
                agents.Add(RunningAgent.Start(i, credentials[i].Password, credentials[i].PrivateKey, cloudKey, brokerPort, root, stop.Token));

            // (1) After the warm-up the directory clusters the prototypes: two clusters, one per concept.
            var first = await WaitForAsync(cloud, s => s.Epoch >= 1 && s.Assignments.Count == Devices, "the first clustering of all 8 devices");
            output.WriteLine($"epoch {first.Epoch} at reference v{first.DecidedAtVersion}: k = {first.K}, silhouettes {string.Join(", ", first.Silhouettes.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value:F3}"))}");
            Assert.Equal(2, first.K);
            var live = first.Clusters.Where(c => c.IsLive).Select(c => c.Cluster).ToArray();
            Assert.Equal(2, live.Length);
            Assert.All(live, c => Assert.True(c > 0));
            var clusterA = first.Assignments["dev-2"];
            var clusterB = first.Assignments["dev-4"];
            Assert.NotEqual(clusterA, clusterB);
            for (var i = 0; i < Devices; i++)
                Assert.Equal(InGroupB(i) ? clusterB : clusterA, first.Assignments[$"dev-{i}"]);

            // Each agent verified its signed assignment (the cloud's key, its own id) and stored it: its group's cluster.
            await Eventually.HoldsAsync(() => Task.FromResult(agents.All(a => a.Assignment(cloudKey) is { } assigned
                && assigned.Epoch >= first.Epoch && Primary(assigned) == first.Assignments[a.Id])), "every agent to verify its assignment", Patience);

            // (2) The agents train the cluster models: both advance over MQTT, each agent sends updates for its group's
            // cluster, and the reference model (cluster 0) keeps advancing with them.
            var referenceAtClustering = first.DecidedAtVersion;
            await Eventually.HoldsAsync(async () => await VersionAsync(cloud, clusterA) >= 2 && await VersionAsync(cloud, clusterB) >= 2
                && await VersionAsync(cloud, 0) >= referenceAtClustering + 2
                && agents.All(a => a.Reports.Any(r => r.Cluster == (InGroupB(a.Index) ? clusterB : clusterA))),
                "both cluster models and the reference to advance two versions", Patience, () => DescribeAsync(cloud, 0, clusterA, clusterB));
            output.WriteLine($"cluster A = {clusterA} v{await VersionAsync(cloud, clusterA)}, cluster B = {clusterB} v{await VersionAsync(cloud, clusterB)}, reference v{await VersionAsync(cloud, 0)}, {agents.Sum(a => a.Statistics.DeclinesEnqueued)} declines");
            Assert.Equal(0, Metrics(cloud).Rejected(RejectionReason.UnknownCluster));
            Assert.Equal(0, Metrics(cloud).Rejected(RejectionReason.Malformed));
            Assert.Equal(0, Metrics(cloud).Rejected(RejectionReason.BadDriftStatistics));

            // (3) A new window on every device: devices 0 and 1 (group A) now hold concept B, the others a fresh sample of
            // their own concept. The drifted devices judge REAL drift from A's centre to B's, the others no real drift.
            var beforeDrift = await Directory(cloud).GetStatusAsync();
            foreach (var agent in agents)
                agent.Windows.Advance(Window(concept: InGroupB(agent.Index) || Drifting.Contains(agent.Index), seed: 100 + agent.Index));
            await Eventually.HoldsAsync(() => Task.FromResult(agents.All(a => a.Verdicts.Any(v => v.WindowIndex == 1))), "every agent's verdict on window 1", Patience);
            foreach (var agent in agents)
            {
                var observation = agent.Verdicts.Single(v => v.WindowIndex == 1);
                var verdict = observation.Assessment!;
                output.WriteLine($"dev-{agent.Index}: {verdict.Class}, centre {observation.PreviousCluster} → {observation.CurrentCluster}, row alignment {verdict.RowAlignment:F2}, label shift {verdict.LabelShift:F2}, feature shift {verdict.FeatureShift:F2}");
                if (Drifting.Contains(agent.Index))
                {
                    Assert.Equal(DriftClass.Real, verdict.Class);
                    Assert.Equal((clusterA, clusterB), (observation.PreviousCluster, observation.CurrentCluster));
                }
                else
                {
                    Assert.NotEqual(DriftClass.Real, verdict.Class);
                }
            }

            // The cloud stored the drifted devices' reports as drift events with their evidence (device → cloud, signed).
            var store = cloud.Services.GetRequiredService<SqliteDriftEventStore>();
            await Eventually.HoldsAsync(async () => (await store.QueryAsync(new DriftEventQuery { Federation = Federation, Kind = DriftKind.Real })).Count >= Drifting.Length,
                "the real-drift events in the cloud's drift store", Patience);
            var realEvents = await store.QueryAsync(new DriftEventQuery { Federation = Federation, Kind = DriftKind.Real });
            Assert.Equal(Drifting.Select(i => $"dev-{i}").Order(), realEvents.Select(e => e.DeviceId).Order());
            Assert.All(realEvents, e => Assert.Equal((1L, clusterA, clusterB), (e.WindowIndex, e.PreviousCentre, e.CurrentCentre)));

            // At the next clustering the drifted devices move to B's cluster; both cluster models carry on.
            var moved = await WaitForAsync(cloud, s => s.Epoch > beforeDrift.Epoch && Drifting.All(i => s.Assignments.GetValueOrDefault($"dev-{i}") == clusterB),
                "the drifted devices' move to cluster B");
            output.WriteLine($"epoch {moved.Epoch} at reference v{moved.DecidedAtVersion}: k = {moved.K}, drifted devices in cluster {clusterB}");
            Assert.Equal(2, moved.K);
            Assert.Equal([clusterA, clusterB], moved.Clusters.Where(c => c.IsLive).Select(c => c.Cluster).Order());
            for (var i = 0; i < Devices; i++)
                Assert.Equal(InGroupB(i) || Drifting.Contains(i) ? clusterB : clusterA, moved.Assignments[$"dev-{i}"]);
            await Eventually.HoldsAsync(() => Task.FromResult(Drifting.All(i => agents[i].Assignment(cloudKey) is { } assigned
                && assigned.Epoch >= moved.Epoch && Primary(assigned) == clusterB)), "the drifted agents to verify their move to cluster B", Patience);

            // (4) The cloud restarts on the same data directory while the agents keep running.
            var before = await Directory(cloud).GetStatusAsync();
            var eventsBefore = await store.QueryAsync(new DriftEventQuery { Federation = Federation });
            var versionsBefore = new Dictionary<int, long>();
            foreach (var c in new[] { 0, clusterA, clusterB })
                versionsBefore[c] = await VersionAsync(cloud, c);
            await StopCloudAsync(cloud);
            cloud = null;
            cloud = await StartCloudAsync(data.Root, brokerPort);

            var after = await Directory(cloud).GetStatusAsync();
            output.WriteLine($"restart: epoch {before.Epoch} → {after.Epoch}, versions before {string.Join(", ", versionsBefore.Select(v => $"{v.Key}: v{v.Value}"))}, {eventsBefore.Count} drift events");
            // The agents' updates keep the reference advancing, so a decision may have been taken since the snapshot;
            // on unchanged data it keeps k, the clusters and every assignment.
            Assert.True(after.Epoch >= before.Epoch, $"epoch {after.Epoch} after the restart, {before.Epoch} before");
            if (after.Epoch == before.Epoch)
                Assert.Equal(before.DecidedAtVersion, after.DecidedAtVersion);
            Assert.Equal(before.K, after.K);
            Assert.Equal(before.Assignments.OrderBy(a => a.Key), after.Assignments.OrderBy(a => a.Key));
            Assert.Equal(before.Clusters.Select(c => (c.Cluster, c.Parent, c.CreatedEpoch, c.IsLive)), after.Clusters.Select(c => (c.Cluster, c.Parent, c.CreatedEpoch, c.IsLive)));
            foreach (var (c, version) in versionsBefore)
                Assert.True(await VersionAsync(cloud, c) >= version, $"cluster {c} lost versions over the restart");
            var eventsAfter = await cloud.Services.GetRequiredService<SqliteDriftEventStore>().QueryAsync(new DriftEventQuery { Federation = Federation });
            Assert.Equal(eventsBefore.Select(e => (e.Id, e.DeviceId, e.Kind, e.WindowIndex)), eventsAfter.Take(eventsBefore.Count).Select(e => (e.Id, e.DeviceId, e.Kind, e.WindowIndex)));

            // Operators see the drift history over the HTTP API of the restarted cloud.
            using (var http = new HttpClient { BaseAddress = cloud.Services.GetRequiredService<TelemetryHttpApi>().Address })
            {
                using var served = JsonDocument.Parse(await http.GetStringAsync($"/api/federations/{Federation}/drift-events?kind=real"));
                var devices = served.RootElement.EnumerateArray().Select(e => e.GetProperty("deviceId").GetString()).Order();
                Assert.Equal(Drifting.Select(i => $"dev-{i}").Order(), devices);
            }

            // The agents carry on with the same clusters: every model advances two more versions after the restart,
            // with no update refused for an unknown cluster, and each drifted device now trains B's cluster.
            bool TrainedBAfterTheRestart(int i) => agents[i].Reports.Any(r => r.Cluster == clusterB && r.BaseVersion > versionsBefore[clusterB]);
            await Eventually.HoldsAsync(async () => await VersionAsync(cloud, clusterA) >= versionsBefore[clusterA] + 2
                && await VersionAsync(cloud, clusterB) >= versionsBefore[clusterB] + 2
                && await VersionAsync(cloud, 0) >= versionsBefore[0] + 2
                && Drifting.All(TrainedBAfterTheRestart), "every model to advance two versions after the restart, the drifted devices training B", Patience,
                () => DescribeAsync(cloud, 0, clusterA, clusterB));
            output.WriteLine($"after the restart: cluster A v{await VersionAsync(cloud, clusterA)}, cluster B v{await VersionAsync(cloud, clusterB)}, reference v{await VersionAsync(cloud, 0)}, {agents.Sum(a => a.Statistics.DeclinesEnqueued)} declines");
            Assert.Equal(0, Metrics(cloud).Rejected(RejectionReason.UnknownCluster));
            Assert.Equal(0, Metrics(cloud).Rejected(RejectionReason.Malformed));
            // Once the cluster models differ, devices decline the cluster of the other concept: the path the deadline above relies on.
            Assert.True(agents.Sum(a => a.Statistics.DeclinesEnqueued) > 0, "no cluster version was declined");
            foreach (var agent in agents)
                Assert.Equal(after.Assignments[agent.Id], Primary(agent.Assignment(cloudKey)!));
            Assert.All(agents, a => Assert.All(a.Reports, r => Assert.Contains(r.Cluster, new[] { 0, clusterA, clusterB })));
        }
        finally
        {
            await stop.CancelAsync();
            foreach (var agent in agents)
                await agent.DisposeAsync();
            if (cloud is not null) await StopCloudAsync(cloud);
            broker?.Dispose();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { System.IO.Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>
    /// One window of <see cref="WindowSamples"/> samples: class k lifts the features f ≡ k (mod C) by 1 (a linear concept);
    /// concept A labels class k as k, concept B as C−1−k (same inputs, other meaning: real drift between them).
    /// </summary>
    private static Dataset Window(bool concept, int seed)
    {
        var random = new Random(seed);
        var x = new float[WindowSamples * Features];
        var y = new long[WindowSamples];
        for (var n = 0; n < WindowSamples; n++)
        {
            var k = random.Next(Classes);
            y[n] = concept ? Classes - 1 - k : k;
            for (var f = 0; f < Features; f++)
                x[n * Features + f] = (float)(random.NextDouble() - 0.5) + (f % Classes == k ? 1f : 0f);
        }
        return new Dataset(x, y, [Features], Classes);
    }

    private static async Task<IHost> StartCloudAsync(string dataDirectory, int brokerPort)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration["Telemetry:Http:Enabled"] = "true";
        builder.Configuration["Telemetry:Http:Port"] = "0";
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Error);
        builder.AddFedEdgeCloud(o =>
        {
            o.DataDirectory = dataDirectory;
            o.Broker = $"mqtt://127.0.0.1:{brokerPort}";
            o.UseLoopback();
            (o.SiloPort, o.GatewayPort) = (TestPorts.Reserve(), TestPorts.Reserve()); // below the ephemeral range, like every test port
            o.SqliteSynchronousFull = false;
        });
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    private static async Task StopCloudAsync(IHost host)
    {
        try
        {
            await host.StopAsync(TimeSpan.FromSeconds(20));
        }
        finally
        {
            if (host is IAsyncDisposable disposable) await disposable.DisposeAsync();
            else host.Dispose();
        }
    }

    private static int Primary(ClusterAssignment assignment) => assignment.Clusters.MaxBy(c => c.Prior)!.Cluster;

    private static IGrainFactory Grains(IHost cloud) => cloud.Services.GetRequiredService<IGrainFactory>();

    private static IClusterDirectoryGrain Directory(IHost cloud) => Grains(cloud).GetGrain<IClusterDirectoryGrain>(Federation);

    private static IngestionMetrics Metrics(IHost cloud) => cloud.Services.GetRequiredService<IngestionMetrics>();

    private static async Task<long> VersionAsync(IHost cloud, int cluster) =>
        (await Grains(cloud).GetGrain<IFederationGrain>(ModelGrainKey.For(Federation, cluster)).GetStatusAsync()).ModelVersion;

    private static async Task<ClusteringStatus> WaitForAsync(IHost cloud, Func<ClusteringStatus, bool> condition, string what)
    {
        ClusteringStatus? status = null;
        await Eventually.HoldsAsync(async () => condition(status = await Directory(cloud).GetStatusAsync()), what, Patience);
        return status!;
    }

    /// <summary>The state of the model grains, for the message of a timeout.</summary>
    private static async Task<string> DescribeAsync(IHost cloud, params int[] clusters)
    {
        var lines = new List<string>();
        foreach (var c in clusters)
        {
            var s = await Grains(cloud).GetGrain<IFederationGrain>(ModelGrainKey.For(Federation, c)).GetStatusAsync();
            lines.Add($"cluster {c}: {s.Phase} v{s.ModelVersion}, pending {s.PendingUpdates}, sampled [{string.Join(" ", s.Sampled)}], live {s.LiveDevices}, " +
                $"deadline {s.RoundDeadline:HH:mm:ss.f}, rejected {string.Join(" ", s.RejectedTotal.Select(r => $"{r.Key}={r.Value}"))}, " +
                $"rounds {string.Join(" ", s.History.TakeLast(4).Select(h => $"v{h.Version}:{h.Updates}u/{h.Duration.TotalSeconds:F1}s"))}");
        }
        return $"now {DateTimeOffset.UtcNow:HH:mm:ss.f}; " + string.Join("; ", lines);
    }

    /// <summary>A real edge agent with FedDAA's device side on, its data windows, verdicts and round reports.</summary>
    private sealed class RunningAgent : IAsyncDisposable
    {
        private readonly EdgeDeviceIdentity _identity;
        private readonly Task _run;
        private readonly string _stateDirectory;

        private RunningAgent(int index, EdgeDeviceIdentity identity, InMemoryDataWindows windows, EdgeAgent agent, string stateDirectory, CancellationToken cancellationToken)
        {
            Index = index;
            _stateDirectory = stateDirectory;
            _identity = identity;
            Windows = windows;
            agent.DriftJudged += Verdicts.Enqueue;
            agent.RoundCompleted += Reports.Enqueue;
            Statistics = agent.Statistics;
            _run = Task.Run(() => agent.RunAsync(cancellationToken), CancellationToken.None);
        }

        public int Index { get; }
        public string Id => $"dev-{Index}";
        public InMemoryDataWindows Windows { get; }
        public ConcurrentQueue<DriftObservation> Verdicts { get; } = new();
        public ConcurrentQueue<EdgeRoundReport> Reports { get; } = new();
        public EdgeAgentStatistics Statistics { get; }

        public static RunningAgent Start(int index, string password, byte[] privateKey, VerificationKey cloudKey, int brokerPort, string root, CancellationToken cancellationToken)
        {
            var id = $"dev-{index}";
            var broker = $"mqtt://127.0.0.1:{brokerPort}";
            var identity = new EdgeDeviceIdentity(id, Federation, id, password, SigningKeyPair.FromPrivateKey(id, privateKey), cloudKey, broker);
            var options = new EdgeAgentOptions
            {
                Broker = broker,
                StateDirectory = Path.Combine(root, "edge", id),
                Training = { LocalEpochs = 1, BatchSize = 16, LearningRate = 0.1f, Threads = 1, Seed = 17 + index },
                Compression = { Codec = "fp32", ErrorFeedback = "none" },
                Mqtt = { ReconnectMinDelay = TimeSpan.FromMilliseconds(100), ReconnectMaxDelay = TimeSpan.FromSeconds(1), KeepAlive = TimeSpan.FromSeconds(5) },
                Outbox = { Fsync = false },
                Drift = { Enabled = true },
            };
            var windows = new InMemoryDataWindows(Window(concept: InGroupB(index), seed: index));
            return new RunningAgent(index, identity, windows, new EdgeAgent(options, identity, windows), options.StateDirectory, cancellationToken);
        }

        /// <summary>The assignment the agent verified and stored (re-verified here with the cloud's key), or null.</summary>
        public ClusterAssignment? Assignment(VerificationKey cloudKey)
        {
            var path = Path.Combine(_stateDirectory, EdgeAgent.AssignmentFileName);
            if (!File.Exists(path)) return null;
            var verified = new ClusterAssignmentVerifier(Federation, Id, new VerificationKeyRing(cloudKey)).Verify(File.ReadAllBytes(path));
            Assert.True(verified.IsAccepted, $"{Id}: stored assignment {verified.Reason} {verified.Message}");
            return verified.Value;
        }

        public async ValueTask DisposeAsync()
        {
            try { await _run; }
            catch (OperationCanceledException) { }
            _identity.Dispose();
        }
    }
}
