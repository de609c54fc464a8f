using System.Buffers;
using System.Collections.Concurrent;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// FedDAA cluster rounds over the product path: a device none of whose samples drew a cluster sends a signed decline
/// (sample_count 0, empty payload) that counts towards the round's quorum and never enters the aggregate; a cluster
/// version announces P_c(y) from the label weights of the updates it aggregated.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ClusterDeclineTests
{
    private const float Delta = 0.25f;

    private static int[] Groups => [0, 1, 0, 1, 0, 1];

    /// <summary>Warm-up round on the reference model, then the first clustering (k = 2); returns the two clusters.</summary>
    private static async Task<(int A, int B, Dictionary<string, ClusterAssignment> Assignments)> ClusterAsync(ClusteringFleet fleet)
    {
        await fleet.SendAsync(cluster: 0, baseVersion: 0, delta: 0.5f, drift: i => ClusteringFleet.Statistics(fleet.Groups[i], i, window: 0));
        var status = await fleet.WaitForEpochAsync(1);
        Assert.Equal(2, status.K);
        var assignments = await fleet.AssignmentsAsync(epoch: 1);
        var live = status.Clusters.Where(c => c.IsLive).Select(c => c.Cluster).Order().ToArray();
        // Every device is live in both clusters (FedRC: a device trains all cluster models).
        Assert.All(assignments.Values, a => Assert.Equal(live, a.Clusters.Select(c => c.Cluster).Order()));
        return (live[0], live[1], assignments);
    }

    private static DriftStatistics Statistics(ClusteringFleet fleet, Dictionary<string, ClusterAssignment> assignments, int device)
    {
        var a = assignments[fleet.Devices[device].Id];
        return ClusteringFleet.Statistics(fleet.Groups[device], device, window: 1, [.. a.Clusters.Select(c => c.Cluster)], ClusteringFleet.Primary(a), epoch: 1);
    }

    private static async Task UpdateAsync(ClusteringFleet fleet, int device, int cluster, long version, DriftStatistics? drift = null)
    {
        var d = (await fleet.Model(cluster).GetStatusAsync()).ParameterCount;
        var sender = fleet.Devices[device];
        await sender.PublishEnvelopeAsync(sender.SignedUpdate(Enumerable.Repeat(Delta, d).ToArray(), version, configure: e =>
        {
            e.Cluster = cluster;
            if (drift is not null) e.Drift = drift;
        }));
    }

    private static async Task DeclineAsync(ClusteringFleet fleet, int device, int cluster, long version, DriftStatistics? drift = null)
    {
        var d = (await fleet.Model(cluster).GetStatusAsync()).ParameterCount;
        var sender = fleet.Devices[device];
        var decline = UpdateDeclines.Create(ClusteringFleet.Federation, sender.Id, cluster, version, "fp32", d);
        decline.UpdateId = UpdateEnvelopeSigner.NewUpdateId();
        decline.Drift = drift;
        await sender.PublishEnvelopeAsync(new UpdateEnvelopeSigner(sender.Key).Sign(decline));
    }

    private static void AssertMovedBy(float[] before, float[] after, float delta)
    {
        Assert.Equal(before.Length, after.Length);
        for (var i = 0; i < before.Length; i++) Assert.Equal(before[i] + delta, after[i], 5);
    }

    [Fact]
    public async Task DeclinesCloseASyncClusterRoundLongBeforeItsDeadline_NeverEnterTheAggregate_AndTheVersionAnnouncesPcy()
    {
        using var data = new TempDirectory();
        // QuorumFraction 1 and a 5-minute deadline: only the declines can close the round within the test's 30 s wait.
        await using var fleet = await ClusteringFleet.StartAsync(data.Path, Groups);
        var (a, _, assignments) = await ClusterAsync(fleet);
        var announcements = await WatchAnnouncementsAsync(fleet, a);
        var v0 = (await fleet.Model(a).GetModelAsync())!.Parameters;

        // The devices of cluster a's group train it; the others decline (with their drift statistics).
        var statistics = Enumerable.Range(0, Groups.Length).Select(i => Statistics(fleet, assignments, i)).ToArray();
        var mine = Enumerable.Range(0, Groups.Length).Where(i => ClusteringFleet.Primary(assignments[fleet.Devices[i].Id]) == a).ToArray();
        Assert.Equal(3, mine.Length);
        for (var i = 0; i < Groups.Length; i++)
        {
            if (mine.Contains(i)) await UpdateAsync(fleet, i, a, 0, statistics[i]);
            else await DeclineAsync(fleet, i, a, 0, statistics[i]);
        }
        await fleet.WaitForVersionAsync(a, 1);

        // Sample-weighted mean of the three real updates only: a decline taken as a zero vector of weight ≥ 1 would pull it below Δ.
        AssertMovedBy(v0, (await fleet.Model(a).GetModelAsync())!.Parameters, Delta);
        var status = await fleet.Model(a).GetStatusAsync();
        Assert.True(status.RoundDeadline > DateTimeOffset.UtcNow + TimeSpan.FromMinutes(4), "the next round opened with a fresh deadline");
        var summary = status.History.Single(r => r.Version == 1);
        Assert.Equal((3, 3), (summary.Updates, summary.Declines));
        Assert.Equal(0, fleet.Metrics.Rejected(RejectionReason.Malformed));

        // v1's signed announcement carries P_a(y): the rows for a of every answer's label weights, summed, add-1 smoothed.
        var expected = new float[ClusteringFleet.Labels];
        foreach (var s in statistics)
        {
            var row = s.Clusters.IndexOf(a);
            for (var r = 0; r < expected.Length; r++) expected[r] += s.ClusterLabelWeights[row * ClusteringFleet.Labels + r];
        }
        var total = expected.Sum() + expected.Length;
        await Eventually.HoldsAsync(() => Task.FromResult(announcements.ContainsKey(1)), "the announcement of v1");
        var announced = announcements[1].LabelDistribution;
        Assert.Equal(expected.Length, announced.Count);
        for (var r = 0; r < expected.Length; r++) Assert.Equal((expected[r] + 1) / total, announced[r], 4);
        Assert.Empty(announcements[0].LabelDistribution); // v0: nothing aggregated yet (devices use the assignment's)

        // P_c(y) is part of the cluster model's durable state: a restarted cloud republishes v1 with it.
        await fleet.RestartAsync(data.Path);
        var republished = await WatchAnnouncementsAsync(fleet, a, retainedVersion: 1);
        Assert.Equal(announced, republished[1].LabelDistribution);
    }

    [Fact]
    public async Task ARoundOfOnlyDeclinesPublishesNoVersion_KeepsThemAcrossARestart_AndALaterUpdateReplacesItsDeviceDecline()
    {
        using var data = new TempDirectory();
        await using var fleet = await ClusteringFleet.StartAsync(data.Path, Groups);
        var (a, _, _) = await ClusterAsync(fleet);
        var v0 = (await fleet.Model(a).GetModelAsync())!.Parameters;

        for (var i = 0; i < Groups.Length; i++) await DeclineAsync(fleet, i, a, 0);
        await Eventually.HoldsAsync(async () => (await fleet.Model(a).GetStatusAsync()).PendingUpdates == Groups.Length, "every decline taken");
        // A second decline of the same round by the same device is refused; nothing to aggregate, so no version.
        await DeclineAsync(fleet, 0, a, 0);
        await Eventually.HoldsAsync(() => Task.FromResult(fleet.Metrics.Rejected(RejectionReason.NotAccepting) == 1), "the repeated decline to be refused");
        var status = await fleet.Model(a).GetStatusAsync();
        Assert.Equal(0, status.ModelVersion);
        Assert.Equal(Groups.Length, status.PendingUpdates);

        // The declines are durable like updates: after a restart they still count, so device 0's update, which replaces
        // its own decline, completes the quorum at once.
        await fleet.RestartAsync(data.Path);
        Assert.Equal(Groups.Length, (await fleet.Model(a).GetStatusAsync()).PendingUpdates);
        await UpdateAsync(fleet, 0, a, 0);
        await fleet.WaitForVersionAsync(a, 1);
        AssertMovedBy(v0, (await fleet.Model(a).GetModelAsync())!.Parameters, Delta);
    }

    [Fact]
    public async Task FedBuffIgnoresDeclines()
    {
        using var data = new TempDirectory();
        await using var fleet = await ClusteringFleet.StartAsync(data.Path, Groups, ClusteringFleet.Config with { Mode = FederationMode.FedBuff, BufferSize = Groups.Length });
        var (a, _, _) = await ClusterAsync(fleet);
        var v0 = (await fleet.Model(a).GetModelAsync())!.Parameters;

        for (var i = 0; i < 3; i++) await UpdateAsync(fleet, i, a, 0);
        for (var i = 3; i < Groups.Length; i++) await DeclineAsync(fleet, i, a, 0);
        await Eventually.HoldsAsync(() => Task.FromResult(fleet.Metrics.Accepted >= 2 * Groups.Length), "updates and declines accepted");
        // Declines fill no buffer slot: three updates in a buffer of six, no version yet.
        var status = await fleet.Model(a).GetStatusAsync();
        Assert.Equal((0L, 3), (status.ModelVersion, status.PendingUpdates));

        for (var i = 3; i < Groups.Length; i++) await UpdateAsync(fleet, i, a, 0);
        await fleet.WaitForVersionAsync(a, 1);
        AssertMovedBy(v0, (await fleet.Model(a).GetModelAsync())!.Parameters, Delta);
    }

    /// <summary>Verified announcements of cluster <paramref name="cluster"/>'s model, by version, as a device receives them.</summary>
    private static async Task<ConcurrentDictionary<long, ModelAnnouncement>> WatchAnnouncementsAsync(ClusteringFleet fleet, int cluster, long retainedVersion = 0)
    {
        var announcements = new ConcurrentDictionary<long, ModelAnnouncement>();
        var cloudKey = new VerificationKeyRing(new VerificationKey(CloudSigningKey.KeyId, fleet.Cloud.Services.GetRequiredService<CloudSigningKey>().PublicKey));
        var verifier = new ModelAnnouncementVerifier(ClusteringFleet.Federation, cloudKey, cluster: cluster);
        var topic = MqttTopics.ClusterModel(ClusteringFleet.Federation, cluster);
        var watcher = fleet.Devices[0].Client;
        watcher.ApplicationMessageReceivedAsync += e =>
        {
            if (e.ApplicationMessage.Topic == topic && e.ApplicationMessage.Payload.Length > 0)
            {
                var verified = verifier.Verify(e.ApplicationMessage.Payload.ToArray());
                Assert.True(verified.IsAccepted, verified.Message);
                announcements[verified.Value.ModelVersion] = verified.Value;
            }
            return Task.CompletedTask;
        };
        await watcher.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await Eventually.HoldsAsync(() => Task.FromResult(announcements.ContainsKey(retainedVersion)), $"the retained announcement of v{retainedVersion}");
        return announcements;
    }
}
