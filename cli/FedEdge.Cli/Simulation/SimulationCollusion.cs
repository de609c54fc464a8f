using FedEdge.Aggregation;

namespace FedEdge.Cli.Simulation;

/// <summary>
/// The channel through which a simulation's colluding attackers see the honest updates of a round, as the omniscient
/// attacks (ALIE, IPM; algorithms.md §2) assume: every honest device reports its Δ for base version v, every attacker
/// waits (bounded) until the honest devices expected for v have reported and gets them as an <see cref="UpdateBatch"/>.
/// Only versions near the newest are kept, so memory stays O(honest devices × d × 2). Thread-safe: agents train in
/// parallel.
/// </summary>
public sealed class SimulationCollusion
{
    private readonly object _gate = new();
    private readonly Dictionary<long, List<float[]>> _reports = [];
    private readonly TimeSpan _wait;
    private int _waiting;

    /// <param name="honestDevices">Honest devices that report each version (the sim samples every device each round).</param>
    /// <param name="wait">How long an attacker waits for them before forging from the reports it has.</param>
    public SimulationCollusion(int honestDevices, TimeSpan wait)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(honestDevices);
        if (wait <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(wait), wait, "The collusion wait must be positive.");
        HonestDevices = honestDevices;
        _wait = wait;
    }

    public int HonestDevices { get; }

    /// <summary>Attackers waiting now for honest reports.</summary>
    public int Waiting
    {
        get
        {
            lock (_gate) return _waiting;
        }
    }

    /// <summary>Times an attacker stopped waiting before every honest device had reported.</summary>
    public int ShortWaits { get; private set; }

    /// <summary>An honest device's Δ for base version <paramref name="version"/> (copied).</summary>
    public void Report(long version, ReadOnlySpan<float> delta)
    {
        var copy = delta.ToArray();
        lock (_gate)
        {
            if (!_reports.TryGetValue(version, out var list)) _reports[version] = list = [];
            list.Add(copy);
            // Versions two behind the newest report can no longer be aggregated in sync mode; async attackers
            // working from an older version then fall back to their own update (see Honest).
            foreach (var old in _reports.Keys.Where(v => v < version - 1).ToArray()) _reports.Remove(old);
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>
    /// The honest updates for <paramref name="version"/>, waiting until all <see cref="HonestDevices"/> reported or
    /// the wait elapsed; null when none arrived (the attacker then has nothing to collude on).
    /// </summary>
    public UpdateBatch? Honest(long version, int dimension, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _wait;
        float[][] rows;
        lock (_gate)
        {
            _waiting++;
            while (Count(version) < HonestDevices && !cancellationToken.IsCancellationRequested)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) break;
                // Wake up now and then to notice cancellation.
                Monitor.Wait(_gate, left < TimeSpan.FromMilliseconds(200) ? left : TimeSpan.FromMilliseconds(200));
            }
            _waiting--;
            cancellationToken.ThrowIfCancellationRequested();
            if (Count(version) < HonestDevices) ShortWaits++;
            rows = _reports.TryGetValue(version, out var list) ? [.. list] : [];
        }
        rows = rows.Where(r => r.Length == dimension).ToArray();
        return rows.Length == 0 ? null : UpdateBatch.FromRows(rows);
    }

    private int Count(long version) => _reports.TryGetValue(version, out var list) ? list.Count : 0;
}
