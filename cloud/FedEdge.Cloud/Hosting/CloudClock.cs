namespace FedEdge.Cloud.Hosting;

/// <summary>
/// The clock of the federation's deadlines (sync rounds, FedFix periods), kept apart from the <see cref="TimeProvider"/>
/// Orleans itself resolves, so that a test can drive the deadlines with a fake clock without stopping the silo's own timers.
/// </summary>
public sealed record CloudClock(TimeProvider Time)
{
    public static CloudClock System { get; } = new(TimeProvider.System);
}
