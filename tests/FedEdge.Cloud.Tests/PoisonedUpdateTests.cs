using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Ingestion;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// Updates built to wreck the model, through the embedded broker with the federation's defaults: a 1e30 update is
/// refused by the norm bound once honest norms are known, and cannot move the model before that (the default rule, a
/// trimmed mean, drops it); an absolute bound refuses it from the first update; an inflated sample count is capped by
/// what the device registered.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class PoisonedUpdateTests
{
    /// <summary>Defaults but for what the test needs: rounds of all five devices, no round limit.</summary>
    private static readonly FederationConfig Defaults = new()
    {
        Model = "logreg",
        Codec = "fp32",
        Rounds = 0,
        RoundDeadline = TimeSpan.FromMinutes(30),
    };

    private static async Task<(IFederationGrain Federation, int D, TestDevice[] Devices)> StartAsync(CloudTestHost cloud, FederationConfig config, int devices)
    {
        var registered = Enumerable.Range(1, devices).Select(i => (Id: $"dev-{i}", Credentials: cloud.Registry.Add($"dev-{i}", "f1"))).ToList();
        var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
        var d = (await federation.StartAsync(config, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        var connected = new List<TestDevice>();
        foreach (var (id, (_, password, key)) in registered) connected.Add(await TestDevice.ConnectAsync(cloud, id, "f1", password, key));
        return (federation, d, [.. connected]);
    }

    private static float[] Filled(int d, float value) => Enumerable.Repeat(value, d).ToArray();

    private static async Task WaitForVersionAsync(IFederationGrain federation, long version) =>
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).ModelVersion == version, $"version {version}");

    [Fact]
    public void TheDefaultRuleIsTheTrimmedMeanWithOneExtremeDroppedAtEachEnd()
    {
        var config = new FederationConfig();
        Assert.Equal("trimmed-mean", config.Rule);
        Assert.Equal(1, config.ByzantineCount);
        Assert.Equal(10, config.MaxNormToMedian);
        Assert.Null(config.Validate());
        Assert.Equal("MaxNormToMedian must be 0 (off) or ≥ 1 (got 0.5)", (config with { MaxNormToMedian = 0.5 }).Validate());
        Assert.Equal("MaxUpdateNorm must be ≥ 0 and finite, 0 for none (got -1)", (config with { MaxUpdateNorm = -1 }).Validate());
    }

    [Fact]
    public async Task A1e30UpdateCannotMoveTheModel_TrimmedAwayFirst_ThenRefusedByTheNormBound()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var (federation, d, devices) = await StartAsync(cloud, Defaults, devices: 5);
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var v0 = (await federation.GetModelAsync())!.Parameters;

        // Version 1: no accepted norms yet, so the update is taken; the trimmed mean drops it (and the lowest honest value).
        await devices[0].PublishEnvelopeAsync(devices[0].SignedUpdate(Filled(d, 1e30f), 0));
        for (var i = 1; i < 5; i++) await devices[i].PublishEnvelopeAsync(devices[i].SignedUpdate(Filled(d, 0.1f * i), 0));
        await WaitForVersionAsync(federation, 1);
        var v1 = (await federation.GetModelAsync())!.Parameters;
        // Trimmed mean of {0.1, 0.2, 0.3, 0.4, 1e30} without the lowest and the highest: 0.3.
        for (var i = 0; i < d; i++) Assert.Equal(v0[i] + 0.3f, v1[i], 1e-5f);

        // Version 2: four honest norms are known, plus one more below; the 1e30 update is now refused when verified.
        for (var i = 1; i < 5; i++) await devices[i].PublishEnvelopeAsync(devices[i].SignedUpdate(Filled(d, 0.1f * i), 1));
        await Eventually.HoldsAsync(async () => (await federation.GetStatusAsync()).PendingUpdates == 4, "four honest updates of version 2");
        await devices[0].PublishEnvelopeAsync(devices[0].SignedUpdate(Filled(d, 1e30f), 1));
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.NormOutOfRange) == 1), "the 1e30 update refused");
        Assert.Equal(4, (await federation.GetStatusAsync()).PendingUpdates);
        Assert.Equal(1, (await cloud.Grains.GetGrain<IDeviceGrain>("dev-1").GetStatisticsAsync()).Rejected[RejectionReason.NormOutOfRange]);

        // An update 5× the usual norm is still taken (within 10× the median).
        await devices[0].PublishEnvelopeAsync(devices[0].SignedUpdate(Filled(d, 1.25f), 1));
        await WaitForVersionAsync(federation, 2);
        var v2 = (await federation.GetModelAsync())!.Parameters;
        // Trimmed mean of {0.1, 0.2, 0.3, 0.4, 1.25}: 0.3 again.
        for (var i = 0; i < d; i++) Assert.Equal(v1[i] + 0.3f, v2[i], 1e-5f);
        Assert.Equal(1, metrics.Rejected(RejectionReason.NormOutOfRange));
    }

    [Fact]
    public async Task AnAbsoluteNormBoundRefusesTheFirstOversizedUpdate_EvenUnderThePlainMean()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var (federation, d, devices) = await StartAsync(cloud, Defaults with { Rule = "mean", MaxUpdateNorm = 100 }, devices: 2);
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var v0 = (await federation.GetModelAsync())!.Parameters;

        await devices[0].PublishEnvelopeAsync(devices[0].SignedUpdate(Filled(d, 1e30f), 0));
        await Eventually.HoldsAsync(() => Task.FromResult(metrics.Rejected(RejectionReason.NormOutOfRange) == 1), "the 1e30 update refused");
        await devices[0].PublishEnvelopeAsync(devices[0].SignedUpdate(Filled(d, 1f), 0));
        await devices[1].PublishEnvelopeAsync(devices[1].SignedUpdate(Filled(d, 3f), 0));
        await WaitForVersionAsync(federation, 1);
        var v1 = (await federation.GetModelAsync())!.Parameters;
        for (var i = 0; i < d; i++) Assert.Equal(v0[i] + 2f, v1[i], 1e-5f);
    }

    [Fact]
    public async Task ASampleCountAboveWhatTheDeviceRegisteredIsCappedToIt()
    {
        using var data = new TempDirectory();
        await using var cloud = await CloudTestHost.StartAsync(data.Path);
        var (_, honestPassword, honestKey) = cloud.Registry.Add("honest", "f1", maxSamples: 50);
        var (_, liarPassword, liarKey) = cloud.Registry.Add("liar", "f1", maxSamples: 100);
        Assert.Equal(100, cloud.Registry.Find("liar")!.MaxSamples);
        Assert.Throws<ArgumentOutOfRangeException>(() => cloud.Registry.Add("empty", "f1", maxSamples: 0));
        var federation = cloud.Grains.GetGrain<IFederationGrain>("f1");
        var d = (await federation.StartAsync(Defaults with { Rule = "mean" }, new Immutable<byte[]>(TestModels.Logreg()))).ParameterCount;
        await using var honest = await TestDevice.ConnectAsync(cloud, "honest", "f1", honestPassword, honestKey);
        await using var liar = await TestDevice.ConnectAsync(cloud, "liar", "f1", liarPassword, liarKey);
        var v0 = (await federation.GetModelAsync())!.Parameters;

        // The liar claims 1,000,000 samples (within the federation's MaxSampleCount): it weighs as its registered 100.
        await liar.PublishEnvelopeAsync(liar.SignedUpdate(Filled(d, 1f), 0, samples: 1_000_000));
        await honest.PublishEnvelopeAsync(honest.SignedUpdate(Filled(d, -2f), 0, samples: 10));
        await WaitForVersionAsync(federation, 1);
        var v1 = (await federation.GetModelAsync())!.Parameters;
        for (var i = 0; i < d; i++) Assert.Equal(v0[i] + ((100f * 1f) + (10f * -2f)) / 110f, v1[i], 1e-5f);
    }
}
