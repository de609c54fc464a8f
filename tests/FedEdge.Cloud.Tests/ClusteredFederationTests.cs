using System.Buffers;
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
/// FedDAA clusters in the cloud over the product path: devices publish signed updates over MQTT whose drift statistics
/// carry prototypes in known groups; the cluster directory chooses k, creates the cluster model grains, publishes signed
/// retained assignments; cluster updates move only their cluster's model; state survives a restart.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ClusteredFederationTests
{
    private static int[] Groups(int k, int perGroup) => [.. Enumerable.Range(0, k * perGroup).Select(i => i % k)];

    /// <summary>Warm-up round on the reference model (cluster 0) carrying window-0 statistics; returns the first clustering.</summary>
    private static async Task<ClusteringStatus> WarmUpAndClusterAsync(ClusteringFleet fleet)
    {
        await fleet.SendAsync(cluster: 0, baseVersion: 0, delta: 0.5f, drift: i => ClusteringFleet.Statistics(fleet.Groups[i], i, window: 0));
        await fleet.WaitForVersionAsync(0, 1);
        return await fleet.WaitForEpochAsync(1);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task DirectoryFindsTheKnownGroups_AssignsEachDeviceToItsGroupsCluster_AndClusterUpdatesMoveOnlyTheirModel(int k)
    {
        using var data = new TempDirectory();
        await using var fleet = await ClusteringFleet.StartAsync(data.Path, Groups(k, 3));
        var v0 = (await fleet.Model(0).GetModelAsync())!.Parameters;

        // A device watches the cluster model topics as the edge agent does (and may, by the broker's ACL).
        var announcements = new System.Collections.Concurrent.ConcurrentDictionary<int, ModelAnnouncement>();
        var cloudKey = new VerificationKeyRing(new VerificationKey(CloudSigningKey.KeyId, fleet.Cloud.Services.GetRequiredService<CloudSigningKey>().PublicKey));
        var watcher = fleet.Devices[0].Client;
        watcher.ApplicationMessageReceivedAsync += e =>
        {
            var topic = e.ApplicationMessage.Topic.Split('/');
            if (topic is [_, _, "cluster", var c, "model"] && e.ApplicationMessage.Payload.Length > 0)
            {
                var verified = new ModelAnnouncementVerifier(ClusteringFleet.Federation, cloudKey).Verify(e.ApplicationMessage.Payload.ToArray());
                Assert.True(verified.IsAccepted, verified.Message);
                Assert.Equal(int.Parse(c, System.Globalization.CultureInfo.InvariantCulture), verified.Value.Cluster);
                announcements[verified.Value.Cluster] = verified.Value;
            }
            return Task.CompletedTask;
        };
        var subscribed = await watcher.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(MqttTopics.AllClusterModelsFilter(ClusteringFleet.Federation), MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, subscribed.Items.Single().ResultCode);

        var status = await WarmUpAndClusterAsync(fleet);
        Assert.Equal(k, status.K);
        Assert.Equal(k, status.Silhouettes.MaxBy(s => s.Value).Key);
        var live = status.Clusters.Where(c => c.IsLive).ToList();
        Assert.Equal(k, live.Count);
        Assert.All(live, c => Assert.Equal(0, c.Parent)); // the first clusters start from the reference model
        Assert.All(live, c => Assert.Equal(1f, c.LabelDistribution.Sum(), 1e-4f));

        // Each device's signed retained assignment verifies, lists every cluster, and puts it in its group's cluster.
        var assignments = await fleet.AssignmentsAsync(epoch: 1);
        var clusterOfGroup = new Dictionary<int, int>();
        for (var i = 0; i < fleet.Devices.Count; i++)
        {
            var a = assignments[fleet.Devices[i].Id];
            Assert.Equal(k, a.Clusters.Count);
            Assert.Equal(k, a.CentreClusters.Count);
            Assert.Equal(k * ClusteringFleet.Labels * ClusteringFleet.Outputs, a.Centres.Count);
            var primary = ClusteringFleet.Primary(a);
            Assert.Equal(0.9f, a.Clusters.Single(c => c.Cluster == primary).Prior, 1e-6f);
            Assert.Equal(primary, status.Assignments[fleet.Devices[i].Id]);
            if (clusterOfGroup.TryGetValue(fleet.Groups[i], out var expected)) Assert.Equal(expected, primary);
            else clusterOfGroup[fleet.Groups[i]] = primary;
        }
        Assert.Equal(k, clusterOfGroup.Values.Distinct().Count());
        await Eventually.HoldsAsync(() => Task.FromResult(live.All(c => announcements.ContainsKey(c.Cluster))), "every cluster model's announcement");

        // Every cluster model starts from the reference model v1 = v0 + 0.5; an update round on one cluster moves only it.
        var target = clusterOfGroup[0];
        await fleet.SendAsync(cluster: target, baseVersion: 0, delta: 1f);
        await fleet.WaitForVersionAsync(target, 1);
        foreach (var c in live.Select(c => c.Cluster))
        {
            var model = (await fleet.Model(c).GetModelAsync())!;
            Assert.Equal(c == target ? 1 : 0, model.Version);
            for (var j = 0; j < v0.Length; j++) Assert.Equal(v0[j] + (c == target ? 1.5f : 0.5f), model.Parameters[j], 1e-5f);
        }
        var reference = (await fleet.Model(0).GetModelAsync())!;
        Assert.Equal(1, reference.Version);
        for (var j = 0; j < v0.Length; j++) Assert.Equal(v0[j] + 0.5f, reference.Parameters[j], 1e-5f);
        await Eventually.HoldsAsync(() => Task.FromResult(announcements[target].ModelVersion == 1), "the cluster's v1 announcement");
    }

    [Fact]
    public async Task WhenAGroupMergesIntoAnother_TheClusterThatLostItsDevicesIsRetired_AndItsUpdatesAreRefused()
    {
        using var data = new TempDirectory();
        await using var fleet = await ClusteringFleet.StartAsync(data.Path, Groups(3, 3));
        var first = await WarmUpAndClusterAsync(fleet);
        Assert.Equal(3, first.K);
        var assignments = await fleet.AssignmentsAsync(epoch: 1);

        // Window 1: group 2's devices now look like group 0 (their concept changed); every device reports its FedRC
        // cluster × label weights for the clusters of its epoch-1 assignment.
        await fleet.SendAsync(cluster: 0, baseVersion: 1, delta: 0f, drift: i =>
        {
            var a = assignments[fleet.Devices[i].Id];
            var group = fleet.Groups[i] == 2 ? 0 : fleet.Groups[i];
            return ClusteringFleet.Statistics(group, i, window: 1, [.. a.Clusters.Select(c => c.Cluster)], ClusteringFleet.Primary(a), epoch: 1);
        });
        await fleet.WaitForVersionAsync(0, 2);
        var second = await fleet.WaitForEpochAsync(2);
        Assert.Equal(2, second.K);
        var retired = second.Clusters.Where(c => c.RetiredEpoch == 2).ToList();
        Assert.Single(retired);
        Assert.Equal(2, second.Clusters.Count(c => c.IsLive));
        Assert.DoesNotContain(second.Clusters, c => c.CreatedEpoch == 2); // no new model: both live clusters carried over

        var now = await fleet.AssignmentsAsync(epoch: 2);
        for (var i = 0; i < fleet.Devices.Count; i++)
        {
            var a = now[fleet.Devices[i].Id];
            Assert.Equal(2, a.Clusters.Count);
            Assert.DoesNotContain(a.Clusters, c => c.Cluster == retired[0].Cluster);
            var sameAs = fleet.Groups[i] == 1 ? 1 : 0;
            Assert.Equal(ClusteringFleet.Primary(now[fleet.Devices[sameAs].Id]), ClusteringFleet.Primary(a));
        }
        Assert.Equal(FederationPhase.Retired, (await fleet.Model(retired[0].Cluster).GetStatusAsync()).Phase);

        var before = fleet.Metrics.Rejected(RejectionReason.UnknownCluster);
        await fleet.Devices[0].PublishEnvelopeAsync(fleet.Devices[0].SignedUpdate(new float[10], 0, configure: e => e.Cluster = retired[0].Cluster));
        await Eventually.HoldsAsync(() => Task.FromResult(fleet.Metrics.Rejected(RejectionReason.UnknownCluster) == before + 1), "the retired cluster's update to be refused");
    }

    [Fact]
    public async Task ARestartKeepsClustersEpochAssignmentsAndClusterModelVersions()
    {
        using var data = new TempDirectory();
        var fleet = await ClusteringFleet.StartAsync(data.Path, Groups(2, 3));
        try
        {
            var before = await WarmUpAndClusterAsync(fleet);
            var assignments = await fleet.AssignmentsAsync(epoch: 1);
            var target = ClusteringFleet.Primary(assignments["dev-0"]);
            var other = ClusteringFleet.Primary(assignments["dev-1"]);
            await fleet.SendAsync(cluster: target, baseVersion: 0, delta: 1f);
            await fleet.WaitForVersionAsync(target, 1);
            var targetModel = (await fleet.Model(target).GetModelAsync())!;

            await fleet.RestartAsync(data.Path);

            var after = await fleet.Directory.GetStatusAsync();
            Assert.Equal(1, after.Epoch);
            Assert.Equal(before.K, after.K);
            Assert.Equal(before.Assignments.OrderBy(a => a.Key), after.Assignments.OrderBy(a => a.Key));
            Assert.Equal(before.Clusters.Select(c => (c.Cluster, c.Parent, c.IsLive)), after.Clusters.Select(c => (c.Cluster, c.Parent, c.IsLive)));
            var restored = (await fleet.Model(target).GetModelAsync())!;
            Assert.Equal(1, restored.Version);
            Assert.Equal(targetModel.Parameters, restored.Parameters);
            Assert.Equal(0, (await fleet.Model(other).GetStatusAsync()).ModelVersion);

            // Operators see the same over the HTTP API.
            using (var http = new HttpClient { BaseAddress = fleet.HttpApi })
            {
                using var served = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"/api/federations/{ClusteringFleet.Federation}/clusters"));
                var clustering = served.RootElement.GetProperty("clustering");
                Assert.Equal(1, clustering.GetProperty("epoch").GetInt64());
                Assert.Equal(before.K, clustering.GetProperty("k").GetInt32());
                Assert.Equal(target, clustering.GetProperty("assignments").GetProperty("dev-0").GetInt32());
                var models = served.RootElement.GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("cluster").GetInt32(), m => m.GetProperty("modelVersion").GetInt64());
                Assert.Equal(new Dictionary<int, long> { [target] = 1, [other] = 0 }, models);
                Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.GetAsync("/api/federations/nothing/clusters")).StatusCode);
            }

            // The retained assignments are republished (the embedded broker lost them) and still verify.
            var republished = await fleet.AssignmentsAsync(epoch: 1);
            foreach (var (device, a) in assignments) Assert.Equal(ClusteringFleet.Primary(a), ClusteringFleet.Primary(republished[device]));

            // The cluster models keep their rounds: the other cluster still takes a round of updates.
            await fleet.SendAsync(cluster: other, baseVersion: 0, delta: 2f);
            await fleet.WaitForVersionAsync(other, 1);
            Assert.Equal(1, (await fleet.Model(target).GetStatusAsync()).ModelVersion);
        }
        finally
        {
            await fleet.DisposeAsync();
        }
    }

    [Fact]
    public async Task BadDriftStatisticsAndUpdatesForAnUnknownClusterAreRejected_Counted_AndChangeNothing()
    {
        using var data = new TempDirectory();
        await using var fleet = await ClusteringFleet.StartAsync(data.Path, Groups(2, 3));
        await WarmUpAndClusterAsync(fleet);
        var device = fleet.Devices[0];
        var directoryBefore = await fleet.Directory.GetStatusAsync();
        var versionsBefore = await Task.WhenAll(directoryBefore.Clusters.Select(async c => (await fleet.Model(c.Cluster).GetStatusAsync()).ModelVersion));

        async Task Expect(RejectionReason reason, Func<Task> send)
        {
            var before = fleet.Metrics.Rejected(reason);
            await send();
            await Eventually.HoldsAsync(() => Task.FromResult(fleet.Metrics.Rejected(reason) == before + 1), $"a {reason} rejection");
        }

        Task SendWith(Action<DriftStatistics> spoil, int cluster = 0) => device.PublishEnvelopeAsync(device.SignedUpdate(new float[10], 1, configure: e =>
        {
            e.Cluster = cluster;
            e.Drift = ClusteringFleet.Statistics(0, 0, window: 5);
            spoil(e.Drift);
        }));

        await Expect(RejectionReason.UnknownCluster, () => SendWith(_ => { }, cluster: 99));
        await Expect(RejectionReason.UnknownCluster, () => SendWith(_ => { }, cluster: -1));
        await Expect(RejectionReason.BadDriftStatistics, () => SendWith(d => d.Prototype.RemoveAt(0)));
        await Expect(RejectionReason.BadDriftStatistics, () => SendWith(d => d.Prototype[1] = float.NaN));
        await Expect(RejectionReason.BadDriftStatistics, () => SendWith(d => d.LabelHistogram[0] = -1));
        await Expect(RejectionReason.BadDriftStatistics, () => SendWith(d => d.Clusters.Add(1))); // a cluster without its weight row
        // Consistent in itself, but 3 × 2 against the fleet's 2 × 2 prototypes: refused by the directory.
        await Expect(RejectionReason.BadDriftStatistics, () => SendWith(d =>
        {
            d.LabelCount = 3;
            d.Prototype.Add([1f, 2f]);
            d.LabelHistogram.Add(5f);
        }));

        var stats = await fleet.Cloud.Grains.GetGrain<IDeviceGrain>(device.Id).GetStatisticsAsync();
        Assert.Equal(2, stats.Rejected[RejectionReason.UnknownCluster]);
        Assert.Equal(5, stats.Rejected[RejectionReason.BadDriftStatistics]);
        Assert.Equal(0, (await fleet.Model(0).GetStatusAsync()).PendingUpdates);
        var directoryAfter = await fleet.Directory.GetStatusAsync();
        Assert.Equal(directoryBefore.Epoch, directoryAfter.Epoch);
        Assert.Equal(directoryBefore.Assignments.OrderBy(a => a.Key), directoryAfter.Assignments.OrderBy(a => a.Key));
        Assert.Equal(versionsBefore, await Task.WhenAll(directoryAfter.Clusters.Select(async c => (await fleet.Model(c.Cluster).GetStatusAsync()).ModelVersion)));
        Assert.All(directoryAfter.Clusters, c => Assert.True(c.IsLive));

        // A revoked device no longer steers the clustering and gets no assignment.
        Assert.True(fleet.Cloud.Registry.Revoke("dev-5"));
        var reclustered = await fleet.Directory.ReclusterAsync();
        Assert.Equal(directoryBefore.Epoch + 1, reclustered.Epoch);
        Assert.Equal(5, reclustered.DevicesWithStatistics);
        Assert.DoesNotContain("dev-5", reclustered.Assignments.Keys);
        Assert.Equal(2, reclustered.K);
        // Its retained assignment is withdrawn; the others' stay (read as the cloud's service identity).
        var service = fleet.Cloud.Services.GetRequiredService<ServiceIdentity>();
        var (reader, _) = await fleet.Cloud.ConnectAsync("assignment-reader", service.UserName, service.Password);
        var retained = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        reader.ApplicationMessageReceivedAsync += e => { retained[e.ApplicationMessage.Topic] = (int)e.ApplicationMessage.Payload.Length; return Task.CompletedTask; };
        await reader.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"fededge/{ClusteringFleet.Federation}/assignment/+", MqttQualityOfServiceLevel.AtLeastOnce).Build());
        // A live message published after the subscription is the signal that every retained one has been delivered.
        var sentinel = MqttTopics.ClusterAssignment(ClusteringFleet.Federation, "sentinel");
        await reader.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(sentinel).WithPayload([1]).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await Eventually.HoldsAsync(() => Task.FromResult(retained.ContainsKey(sentinel)), "the sentinel after the retained assignments");
        retained.TryRemove(sentinel, out _);
        Assert.Equal(Enumerable.Range(0, 5).Select(i => MqttTopics.ClusterAssignment(ClusteringFleet.Federation, $"dev-{i}")).Order(), retained.Keys.Order());
        Assert.All(retained.Values, length => Assert.True(length > 0));
        reader.Dispose();

        // An unclustered federation has no cluster models at all.
        var (_, password, key) = fleet.Cloud.Registry.Add("plain-1", "plain");
        await using var plain = await TestDevice.ConnectAsync(fleet.Cloud, "plain-1", "plain", password, key);
        await fleet.Cloud.Grains.GetGrain<IFederationGrain>("plain").StartAsync(ClusteringFleet.Config with { Clustering = "none" }, new Immutable<byte[]>(TestModels.Logreg()));
        await Expect(RejectionReason.UnknownCluster, () => plain.PublishEnvelopeAsync(plain.SignedUpdate(new float[10], 0, configure: e => e.Cluster = 1)));
        Assert.Equal(0, (await fleet.Cloud.Grains.GetGrain<IFederationGrain>("plain").GetStatusAsync()).PendingUpdates);
    }

    [Fact]
    public void ClusteringSettingsAreValidated()
    {
        var config = ClusteringFleet.Config;
        Assert.Null(config.Validate());
        Assert.Null((config with { Clustering = "none", MaxClusters = 0 }).Validate()); // ignored unless clustered
        Assert.Equal("Clustering must be none or feddaa (got 'ifca')", (config with { Clustering = "ifca" }).Validate());
        Assert.Equal("ReclusterEvery must be ≥ 1 (got 0)", (config with { ReclusterEvery = 0 }).Validate());
        Assert.Equal("MaxClusters must be in [2, 64] (got 1)", (config with { MaxClusters = 1 }).Validate());
        Assert.Equal("ClusterSwitchMargin must be in [0, 2] (got NaN)", (config with { ClusterSwitchMargin = double.NaN }).Validate());
        Assert.Equal("WarmupVersions must be ≥ 0 (got -1)", (config with { WarmupVersions = -1 }).Validate());
        Assert.StartsWith("WarmupVersions (5) must be below Rounds (5)", (config with { WarmupVersions = 5, Rounds = 5 }).Validate());
        Assert.Equal(("f", 0), ModelGrainKey.Parse(ModelGrainKey.For("f", 0)));
        Assert.Equal(("f", 7), ModelGrainKey.Parse(ModelGrainKey.For("f", 7)));
        Assert.False(Identifiers.IsValid(ModelGrainKey.For("f", 7))); // a cluster key can never name a federation
    }
}
