using FedEdge.Data;
using FedEdge.Drift;

namespace FedEdge.Edge.Drift;

/// <summary>One time window of the device's local data (FedDAA's per-time-step data set).</summary>
/// <param name="Index">The window counter; increases with every new window (a directory source uses the file's number).</param>
/// <param name="Test">Optional local test set of the window, for the accuracy reported with each update.</param>
public sealed record EdgeDataWindow(long Index, Dataset Train, Dataset? Test = null);

/// <summary>The newest window and the one before it, as seen by one poll.</summary>
public sealed class EdgeWindowPair(EdgeDataWindow current, EdgeDataWindow? previous)
{
    public EdgeDataWindow Current { get; } = current;

    public EdgeDataWindow? Previous { get; } = previous;

    /// <summary>
    /// The data to train on after FedDAA's adaptation decision: the current window, or the previous and the current one
    /// together (one previous window kept). Without a previous window, the current one.
    /// </summary>
    public Dataset TrainingData(TrainingWindow window) =>
        window == TrainingWindow.PreviousAndCurrent && Previous is { } previous
            ? _combined ??= DatasetConcatenation.Concat(previous.Train, Current.Train)
            : Current.Train;

    // Built once per pair: every round of the window trains on it.
    private Dataset? _combined;
}

/// <summary>
/// Where the agent gets its local data from, one time window at a time. The host advances it (new data arrived); the
/// agent polls it before each round, so a window change takes effect at the next model version. Implementations are
/// thread-safe: the host advances while the agent polls.
/// </summary>
public interface IEdgeDataWindows
{
    /// <summary>The current and previous window now (a directory source looks for new files here).</summary>
    EdgeWindowPair Poll();
}

/// <summary>Today's single static data set: one window (index 0) that never changes.</summary>
public sealed class FixedDataWindow(EdgeLocalData data) : IEdgeDataWindows
{
    private readonly EdgeWindowPair _pair = new(new EdgeDataWindow(0, data.Train, data.Test), null);

    public EdgeWindowPair Poll() => _pair;
}

/// <summary>Windows pushed by the host in memory (simulator, tests): <see cref="Advance"/> makes a new current window.</summary>
public sealed class InMemoryDataWindows : IEdgeDataWindows
{
    private readonly Lock _lock = new();
    private EdgeWindowPair _pair;

    public InMemoryDataWindows(Dataset train, Dataset? test = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        _pair = new EdgeWindowPair(new EdgeDataWindow(0, train, test), null);
    }

    public EdgeWindowPair Poll()
    {
        lock (_lock)
            return _pair;
    }

    /// <summary>Makes (<paramref name="train"/>, <paramref name="test"/>) the current window; the old current becomes the previous one.</summary>
    /// <returns>The new window's index.</returns>
    public long Advance(Dataset train, Dataset? test = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        lock (_lock)
        {
            var current = new EdgeDataWindow(_pair.Current.Index + 1, train, test);
            _pair = new EdgeWindowPair(current, _pair.Current);
            return current.Index;
        }
    }
}

/// <summary>Concatenation of two labelled data sets with the same sample shape (previous + current window).</summary>
internal static class DatasetConcatenation
{
    public static Dataset Concat(Dataset a, Dataset b)
    {
        if (!a.SampleShape.AsSpan().SequenceEqual(b.SampleShape))
            throw new InvalidOperationException($"Two data windows have different sample shapes [{string.Join(", ", a.SampleShape)}] and [{string.Join(", ", b.SampleShape)}].");
        if (!a.HasLabels || !b.HasLabels)
            throw new InvalidOperationException("Data windows must hold class labels.");
        var x = new float[(a.Count + b.Count) * a.SampleSize];
        var y = new long[a.Count + b.Count];
        a.CopyRange(0, a.Count, x, y);
        b.CopyRange(0, b.Count, x.AsSpan(a.Count * a.SampleSize), y.AsSpan(a.Count));
        return new Dataset(x, y, a.SampleShape, Math.Max(a.ClassCount, b.ClassCount));
    }
}
