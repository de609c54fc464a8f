using FedEdge.Cli.Simulation;

namespace FedEdge.EndToEnd.Tests;

/// <summary>Heterogeneous devices of `fededge sim`: seeded draws, exact shares, the time they add, time to accuracy.</summary>
public sealed class SimulatedDevicesTests
{
    private static SimulationOptions Options(int devices = 10, int seed = 7, string speed = "lognormal:0.5", double stragglers = 0, double offline = 0) => new()
    {
        Devices = devices,
        Rounds = 10,
        Seed = seed,
        DeviceSpeed = speed,
        Stragglers = stragglers,
        Offline = offline,
    };

    [Fact]
    public void Lognormal_speed_factors_are_reproducible_from_the_seed()
    {
        var first = SimulatedDevices.Draw(Options());
        var again = SimulatedDevices.Draw(Options());
        Assert.Equal(first, again);
        Assert.NotEqual(first.Select(d => d.SpeedFactor), SimulatedDevices.Draw(Options(seed: 8)).Select(d => d.SpeedFactor));
        // Device i's draw does not depend on the devices after it.
        Assert.Equal(first.Select(d => d.SpeedFactor), SimulatedDevices.Draw(Options(devices: 25)).Take(10).Select(d => d.SpeedFactor));
        Assert.Equal(SimulationRunner.DeviceId(3), first[3].DeviceId);
        // Without stragglers the slowdown is the draw itself.
        Assert.All(first, d => Assert.Equal(d.SpeedFactor, d.Slowdown));
    }

    [Fact]
    public void Lognormal_speed_factors_have_the_configured_sigma()
    {
        // ln f = σ z with z ~ N(0, 1): over 4,000 devices the sample mean is within 0.03 of 0 and the deviation within 0.03 of σ (> 5 standard errors).
        var logs = SimulatedDevices.Draw(Options(devices: 4000, speed: "lognormal:0.8")).Select(d => Math.Log(d.SpeedFactor)).ToArray();
        var mean = logs.Average();
        var deviation = Math.Sqrt(logs.Sum(l => (l - mean) * (l - mean)) / (logs.Length - 1));
        Assert.InRange(mean, -0.03, 0.03);
        Assert.InRange(deviation, 0.77, 0.83);
    }

    [Fact]
    public void Uniform_speeds_leave_every_device_at_this_machines_speed()
    {
        var options = Options(speed: "uniform");
        Assert.All(SimulatedDevices.Draw(options), d => Assert.Equal(1.0, d.Slowdown));
        Assert.False(options.HeterogeneousDevices);
        Assert.True(Options().HeterogeneousDevices);
    }

    [Theory]
    [InlineData(10, 0.3, 3)]
    [InlineData(100, 0.29, 29)] // 0.29 × 100 is 28.999… in binary: still 29
    [InlineData(6, 0.2, 1)]
    [InlineData(10, 0.01, 1)] // a positive share selects at least one device
    [InlineData(10, 0, 0)]
    [InlineData(4, 1, 4)]
    public void Straggler_share_is_exact(int devices, double fraction, int expected)
    {
        var options = Options(devices, speed: "uniform", stragglers: fraction) with { StragglerSlowdown = 10 };
        var drawn = SimulatedDevices.Draw(options);
        Assert.Equal(expected, options.StragglerCount);
        Assert.Equal(expected, drawn.Count(d => d.Straggler));
        Assert.All(drawn, d => Assert.Equal(d.Straggler ? 10.0 : 1.0, d.Slowdown));
    }

    [Fact]
    public void Stragglers_are_slower_on_top_of_their_draw_and_the_choice_is_seeded()
    {
        var options = Options(devices: 20, stragglers: 0.25) with { StragglerSlowdown = 4 };
        var drawn = SimulatedDevices.Draw(options);
        Assert.Equal(5, drawn.Count(d => d.Straggler));
        Assert.All(drawn, d => Assert.Equal(d.SpeedFactor * (d.Straggler ? 4 : 1), d.Slowdown, 12));
        Assert.Equal(drawn.Where(d => d.Straggler).Select(d => d.Index), SimulatedDevices.Draw(options).Where(d => d.Straggler).Select(d => d.Index));
        Assert.NotEqual(drawn.Where(d => d.Straggler).Select(d => d.Index),
            SimulatedDevices.Draw(options with { Seed = 99 }).Where(d => d.Straggler).Select(d => d.Index));
    }

    [Fact]
    public void Offline_share_is_exact_with_one_outage_each_in_the_first_half_of_the_rounds()
    {
        var options = Options(devices: 10, offline: 0.2);
        var drawn = SimulatedDevices.Draw(options);
        var offline = drawn.Where(d => d.OutageAfterRound is not null).ToList();
        Assert.Equal(2, offline.Count);
        Assert.All(offline, d => Assert.InRange(d.OutageAfterRound!.Value, 1, 5));
    }

    [Fact]
    public void A_device_holds_its_update_for_its_extra_time_and_goes_offline_once()
    {
        var options = Options() with { TimeScale = 0.5, OfflineSeconds = 30 };
        var slow = new SimulatedDevice(0, "sim-000", 3, false, 3, OutageAfterRound: 2);
        var speed = SimulatedDevices.Speed(slow, options);
        var training = TimeSpan.FromSeconds(4);
        // (3 − 1) × 4 s × 0.5 = 4 s extra; the 30 s outage scaled to 15 s, after round 2 only.
        Assert.Equal(new(TimeSpan.FromSeconds(4), TimeSpan.Zero), speed.AfterTraining(1, training));
        Assert.Equal(new(TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(15)), speed.AfterTraining(2, training));
        Assert.Equal(TimeSpan.Zero, speed.AfterTraining(3, training).Outage);
        // A draw below 1 cannot train faster than this machine: no extra time.
        var fast = SimulatedDevices.Speed(slow with { SpeedFactor = 0.4, Slowdown = 0.4, OutageAfterRound = null }, options);
        Assert.Equal(default, fast.AfterTraining(1, training));
    }

    [Theory]
    [InlineData("lognormal")]
    [InlineData("lognormal:0")]
    [InlineData("lognormal:-1")]
    [InlineData("lognormal:abc")]
    [InlineData("gamma:1")]
    public void Bad_speed_specs_are_refused_with_the_flag_named(string spec)
    {
        var error = Assert.Throws<ArgumentException>(() => Options(speed: spec).Validate());
        Assert.Contains("--device-speed", error.Message);
    }

    [Fact]
    public void Bad_heterogeneity_settings_are_refused()
    {
        Assert.Contains("--stragglers", Assert.Throws<ArgumentException>(() => Options(stragglers: 1.5).Validate()).Message);
        Assert.Contains("--straggler-slowdown", Assert.Throws<ArgumentException>(() => (Options() with { StragglerSlowdown = 0.5 }).Validate()).Message);
        Assert.Contains("--offline", Assert.Throws<ArgumentException>(() => Options(offline: -0.1).Validate()).Message);
        Assert.Contains("--offline-seconds", Assert.Throws<ArgumentException>(() => (Options(offline: 0.2) with { OfflineSeconds = 0 }).Validate()).Message);
        Assert.Contains("--time-scale", Assert.Throws<ArgumentException>(() => (Options() with { TimeScale = 0 }).Validate()).Message);
        Assert.Contains("--target-accuracy", Assert.Throws<ArgumentException>(() => (Options() with { TargetAccuracy = 1.5 }).Validate()).Message);
        (Options(stragglers: 0.2, offline: 0.1) with { Attack = "none" }).Validate();
    }

    [Fact]
    public void Time_to_accuracy_is_the_elapsed_time_of_the_first_version_at_the_target()
    {
        SimulationRound Round(long version, double accuracy, double elapsed) => new(version, 3, 0, 0, null, accuracy, 0, 1, 0, elapsed, 0, 0);
        SimulationRound[] rounds = [Round(1, 0.5, 2), Round(2, double.NaN, 4), Round(3, 0.79, 6), Round(4, 0.8, 8), Round(5, 0.9, 10), Round(6, 0.7, 12)];
        Assert.Equal(8, SimulationReport.TimeToAccuracy(rounds, 0.8)); // reaching the target exactly counts
        Assert.Equal(10, SimulationReport.TimeToAccuracy(rounds, 0.85));
        Assert.Equal(2, SimulationReport.TimeToAccuracy(rounds, 0.1));
        Assert.Null(SimulationReport.TimeToAccuracy(rounds, 0.95));
        Assert.Null(SimulationReport.TimeToAccuracy([], 0.8));
        Assert.Equal(4, SimulationReport.FirstReaching(rounds, 0.8)!.Round);
    }
}
