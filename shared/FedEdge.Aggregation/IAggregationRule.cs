namespace FedEdge.Aggregation;

/// <summary>A batch aggregation rule: n validated updates of dimension d in, one d-vector out.</summary>
public interface IAggregationRule
{
    /// <summary>Short name as used on the command line (e.g. "trimmed-mean").</summary>
    string Name { get; }

    /// <summary>
    /// Aggregates <paramref name="updates"/> into <paramref name="result"/> (length d). The batch is validated first;
    /// an <see cref="InvalidUpdateException"/> names a non-finite update, an <see cref="ArgumentException"/> a batch
    /// too small for the rule's f.
    /// </summary>
    void Aggregate(UpdateBatch updates, Span<float> result);
}

/// <summary>A rule that decomposes over updates and can therefore aggregate them as they stream in.</summary>
public interface IStreamingRule : IAggregationRule
{
    /// <summary>A fresh accumulator for updates of <paramref name="dimension"/> coordinates.</summary>
    IStreamingAggregator CreateAccumulator(int dimension);
}

/// <summary>
/// Accumulates updates one at a time in O(d) memory without allocating per update. Add validates each update and
/// throws <see cref="InvalidUpdateException"/> (leaving the state untouched) for a bad one.
/// </summary>
public interface IStreamingAggregator
{
    int Dimension { get; }

    /// <summary>Updates accepted since construction or the last <see cref="Reset"/>.</summary>
    int Count { get; }

    void Add(ReadOnlySpan<float> update, float weight = 1f);

    /// <summary>Writes the aggregate of everything added so far; the state is kept (call Reset to start over).</summary>
    void Complete(Span<float> result);

    void Reset();
}

/// <summary>
/// Base class for batch rules: checks the output length, validates the batch once (finite, weights sane) and the
/// rule's own size constraints, so that <see cref="AggregateCore"/> only ever sees clean input.
/// </summary>
public abstract class AggregationRule : IAggregationRule
{
    public abstract string Name { get; }

    public void Aggregate(UpdateBatch updates, Span<float> result)
    {
        ArgumentNullException.ThrowIfNull(updates);
        if (result.Length != updates.Dimension)
        {
            throw new ArgumentException(
                $"{Name}: the result has {result.Length} coordinates but the updates have {updates.Dimension}.",
                nameof(result));
        }

        updates.EnsureValid();
        CheckCount(updates.Count);
        AggregateCore(updates, result);
    }

    /// <summary>Throws an <see cref="ArgumentException"/> when n updates are too few for the configured f.</summary>
    protected virtual void CheckCount(int count)
    {
    }

    protected abstract void AggregateCore(UpdateBatch updates, Span<float> result);

    /// <summary>Shared check for rules whose breakdown point is 1/2: they need n &gt; 2f.</summary>
    protected void RequireHonestMajority(int count, int f)
    {
        if (2 * f >= count)
        {
            throw new ArgumentException(
                $"{Name} tolerates f < n/2 Byzantine updates; f = {f} is too large for n = {count}.");
        }
    }
}
