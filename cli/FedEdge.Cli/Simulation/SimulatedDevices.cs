using System.Globalization;
using FedEdge.Edge.Training;

namespace FedEdge.Cli.Simulation;

/// <summary>One simulated device's drawn speed, recorded with the run.</summary>
/// <param name="SpeedFactor">exp(σ·z), z ~ N(0, 1) (1 with uniform speeds).</param>
/// <param name="Slowdown">How many times longer than this machine a local round takes: the speed factor, times the
/// straggler slowdown for a straggler; below 1 it runs at this machine's speed (a simulated device cannot train faster).</param>
/// <param name="OutageAfterRound">The local round after which the device goes offline once (null = never).</param>
public sealed record SimulatedDevice(int Index, string DeviceId, double SpeedFactor, bool Straggler, double Slowdown, int? OutageAfterRound);

/// <summary>
/// Heterogeneous devices of `fededge sim`: seeded speed draws, stragglers and outages, and the <see cref="IDeviceSpeed"/>
/// that turns them into time. A device with slowdown f holds each trained update (f − 1) × its measured training time
/// before queueing it, so it takes f times as long in real time (times <see cref="SimulationOptions.TimeScale"/> for the
/// extra part); sync and async runs can then be compared in wall-clock time to a target accuracy.
/// </summary>
public static class SimulatedDevices
{
    /// <summary>σ of a <c>--device-speed</c> spec: 0 for <c>uniform</c>, SIGMA for <c>lognormal:SIGMA</c>.</summary>
    public static double ParseSpeed(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Equals("uniform", StringComparison.OrdinalIgnoreCase))
            return 0;
        const string prefix = "lognormal:";
        if (spec.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)
            && double.TryParse(spec.AsSpan(prefix.Length), NumberStyles.Float, CultureInfo.InvariantCulture, out var sigma)
            && sigma > 0 && double.IsFinite(sigma))
            return sigma;
        throw new ArgumentException($"--device-speed is 'uniform' or 'lognormal:SIGMA' with SIGMA > 0, e.g. lognormal:0.5 (got '{spec}').");
    }

    /// <summary>The devices a fraction selects: rounded down, at least one when the fraction is positive (as for attackers).</summary>
    public static int Share(double fraction, int devices) =>
        fraction > 0 && devices > 0 ? Math.Clamp((int)Math.Floor(fraction * devices + 1e-9), 1, devices) : 0;

    /// <summary>
    /// Every device's profile, reproducible from the options' seed: z_i from one seeded stream in device order (so device
    /// i's draw does not depend on how many devices follow), stragglers and offline devices each a seeded choice of
    /// exactly <see cref="SimulationOptions.StragglerCount"/> and <see cref="SimulationOptions.OfflineCount"/> devices, the
    /// outage after a seeded local round in 1..⌈R/2⌉ (an async device trains about every other version, so it gets there too).
    /// </summary>
    public static IReadOnlyList<SimulatedDevice> Draw(SimulationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var sigma = options.SpeedSigma;
        var speeds = new Random(unchecked(options.Seed * 7919 + 0x5bd));
        var stragglers = Choose(options.Devices, options.StragglerCount, new Random(options.Seed ^ 0x57a991));
        var offline = Choose(options.Devices, options.OfflineCount, new Random(options.Seed ^ 0x0ff11e));
        var outageRounds = new Random(unchecked(options.Seed * 31 + 0x0ff));
        var lastOutageRound = Math.Max(1, (options.Rounds + 1) / 2);
        var devices = new SimulatedDevice[options.Devices];
        for (var i = 0; i < devices.Length; i++)
        {
            var z = StandardNormal(speeds);
            var factor = sigma > 0 ? Math.Exp(sigma * z) : 1;
            var straggler = stragglers.Contains(i);
            int? outage = offline.Contains(i) ? outageRounds.Next(1, lastOutageRound + 1) : null;
            devices[i] = new SimulatedDevice(i, SimulationRunner.DeviceId(i), factor, straggler, factor * (straggler ? options.StragglerSlowdown : 1), outage);
        }
        return devices;
    }

    /// <summary>The agent's <see cref="IDeviceSpeed"/> for <paramref name="device"/>.</summary>
    public static IDeviceSpeed Speed(SimulatedDevice device, SimulationOptions options) =>
        new Paced(device, options.TimeScale, TimeSpan.FromSeconds(options.OfflineSeconds * options.TimeScale));

    /// <summary>Box–Muller: one N(0, 1) draw from two uniforms.</summary>
    private static double StandardNormal(Random random)
    {
        var u1 = 1.0 - random.NextDouble(); // (0, 1]: the logarithm stays finite
        var u2 = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    private static HashSet<int> Choose(int devices, int count, Random random)
    {
        var order = Enumerable.Range(0, devices).ToArray();
        random.Shuffle(order);
        return [.. order.Take(count)];
    }

    /// <summary>A device's time: (slowdown − 1) × measured training time, scaled; the outage once, after its round.</summary>
    private sealed class Paced(SimulatedDevice device, double timeScale, TimeSpan outage) : IDeviceSpeed
    {
        public DeviceRoundTiming AfterTraining(int round, TimeSpan trainingTime) => new(
            trainingTime * (Math.Max(0, device.Slowdown - 1) * timeScale),
            round == device.OutageAfterRound ? outage : TimeSpan.Zero);
    }
}
