namespace FedEdge.Aggregation;

/// <summary>
/// n model updates of d float32 coordinates in one row-major n×d block, with optional per-update weights
/// (sample counts). Rules read rows as spans; the block is validated once (finite values, sane weights)
/// before the first rule sees it.
/// </summary>
public sealed class UpdateBatch
{
    private volatile bool _validated;

    /// <param name="data">Row-major n×d coordinates: update i occupies <c>[i·d, (i+1)·d)</c>.</param>
    /// <param name="count">n, the number of updates.</param>
    /// <param name="dimension">d, the coordinates per update.</param>
    /// <param name="weights">Empty for uniform weights, else n non-negative finite weights with a positive sum.</param>
    public UpdateBatch(ReadOnlyMemory<float> data, int count, int dimension, ReadOnlyMemory<float> weights = default)
    {
        if (count <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, "An update batch needs at least one update.");
        }

        if (dimension <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(dimension), dimension, "Updates need at least one coordinate.");
        }

        if ((long)count * dimension != data.Length)
        {
            throw new ArgumentException(
                $"The update block holds {data.Length} floats, but {count} updates of dimension {dimension} need {(long)count * dimension}.",
                nameof(data));
        }

        if (!weights.IsEmpty && weights.Length != count)
        {
            throw new ArgumentException($"{weights.Length} weights given for {count} updates.", nameof(weights));
        }

        Data = data;
        Count = count;
        Dimension = dimension;
        Weights = weights;
    }

    /// <summary>The row-major n×d block.</summary>
    public ReadOnlyMemory<float> Data { get; }

    /// <summary>n, the number of updates.</summary>
    public int Count { get; }

    /// <summary>d, the coordinates per update.</summary>
    public int Dimension { get; }

    /// <summary>Per-update weights; empty means uniform.</summary>
    public ReadOnlyMemory<float> Weights { get; }

    /// <summary>Whether the batch carries explicit weights.</summary>
    public bool IsWeighted => !Weights.IsEmpty;

    /// <summary>Update <paramref name="index"/> as a span of d coordinates.</summary>
    public ReadOnlySpan<float> Row(int index) => Data.Span.Slice(checked(index * Dimension), Dimension);

    /// <summary>The weight of update <paramref name="index"/> (1 when unweighted).</summary>
    public float Weight(int index) => Weights.IsEmpty ? 1f : Weights.Span[index];

    /// <summary>Copies rows into one block. Rows of different lengths are rejected with the offending index.</summary>
    public static UpdateBatch FromRows(IReadOnlyList<float[]> rows, IReadOnlyList<float>? weights = null)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0)
        {
            throw new ArgumentException("An update batch needs at least one update.", nameof(rows));
        }

        int d = rows[0].Length;
        var block = new float[(long)rows.Count * d];
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Length != d)
            {
                throw new InvalidUpdateException(i, $"update {i} has {rows[i].Length} coordinates, expected {d}");
            }

            rows[i].CopyTo(block, (long)i * d);
        }

        return new UpdateBatch(block, rows.Count, d, weights is null ? default : weights.ToArray());
    }

    /// <summary>
    /// Rejects the batch with an <see cref="InvalidUpdateException"/> naming the first non-finite coordinate or bad
    /// weight. Runs once per batch; later calls return immediately.
    /// </summary>
    public void EnsureValid()
    {
        if (_validated)
        {
            return;
        }

        UpdateValidator.ThrowIfInvalid(this);
        _validated = true;
    }

    /// <summary>The row-normalised weights (uniform 1/n when unweighted), in double for stable sums.</summary>
    public double[] NormalizedWeights()
    {
        var result = new double[Count];
        if (Weights.IsEmpty)
        {
            Array.Fill(result, 1.0 / Count);
            return result;
        }

        var w = Weights.Span;
        double sum = 0;
        for (int i = 0; i < w.Length; i++)
        {
            sum += w[i];
        }

        for (int i = 0; i < w.Length; i++)
        {
            result[i] = w[i] / sum;
        }

        return result;
    }
}
