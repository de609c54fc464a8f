namespace FedEdge.Edge.Training;

/// <summary>
/// Simulated device heterogeneity: after each local round, how much longer than this machine the device would have
/// taken, and whether it then goes off the network for a while. The production agent has none (a real device runs at
/// its own speed); `fededge sim` plugs in seeded slowdowns, stragglers and outages so that sync and async federations
/// can be compared in wall-clock time, not only in versions.
/// </summary>
public interface IDeviceSpeed
{
    /// <param name="round">The agent's local round in this run, counted from 1.</param>
    /// <param name="trainingTime">What the round's local training measured on this machine.</param>
    DeviceRoundTiming AfterTraining(int round, TimeSpan trainingTime);
}

/// <summary>What a simulated device does between training a round and queueing its update.</summary>
/// <param name="Delay">Extra time before the update is queued, as if training had taken that much longer.</param>
/// <param name="Outage">Then the device is off the network this long (zero = not), its update held back until it is back.</param>
public readonly record struct DeviceRoundTiming(TimeSpan Delay, TimeSpan Outage);
