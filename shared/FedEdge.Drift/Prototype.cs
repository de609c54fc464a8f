using System.Numerics.Tensors;

namespace FedEdge.Drift;

/// <summary>
/// FedDAA prototype of one data window (Peng et al., "FedDAA: Dynamic Client Clustering for Concept Drift
/// Adaptation in Federated Learning", arXiv 2506.21054): P[r, :] = mean of a reference model's logits over the
/// window's samples of label r, a zero row when label r is absent; flattened row-major (R × D).
/// Because every row is "what the model outputs for inputs labelled r", a change of P(y|x) (labels remapped)
/// permutes or mixes the rows, while a change of P(x) or P(y) alone leaves each row near where it was.
/// <example>Labels [0, 0, 1], logits [[1, 0], [3, 0], [0, 5]], R = 3 → P = [[2, 0], [0, 5], [0, 0]], counts [2, 1, 0].</example>
/// </summary>
public sealed class Prototype
{
    public Prototype(int labelCount, int outputDimension, float[] values, int[] counts)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(labelCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outputDimension);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(counts);
        if (values.Length != labelCount * outputDimension)
        {
            throw new ArgumentException($"A prototype of {labelCount} labels × {outputDimension} outputs has {labelCount * outputDimension} values, not {values.Length}.", nameof(values));
        }

        if (counts.Length != labelCount)
        {
            throw new ArgumentException($"A prototype of {labelCount} labels needs {labelCount} counts, not {counts.Length}.", nameof(counts));
        }

        LabelCount = labelCount;
        OutputDimension = outputDimension;
        Values = values;
        Counts = counts;
    }

    /// <summary>R: rows (labels).</summary>
    public int LabelCount { get; }

    /// <summary>D: logits per row.</summary>
    public int OutputDimension { get; }

    /// <summary>R × D values, row-major; the vector clustered by the server.</summary>
    public float[] Values { get; }

    /// <summary>Samples per label that went into each row (0: zero row, label absent).</summary>
    public int[] Counts { get; }

    public ReadOnlySpan<float> Row(int label) => Values.AsSpan(label * OutputDimension, OutputDimension);

    /// <summary>Builds the prototype from a window's logits (n × D, row-major) and labels (n).</summary>
    public static Prototype FromLogits(ReadOnlySpan<float> logits, ReadOnlySpan<long> labels, int labelCount, int outputDimension)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(labelCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outputDimension);
        if (logits.Length != labels.Length * outputDimension)
        {
            throw new ArgumentException($"{labels.Length} samples with {outputDimension} logits each need {labels.Length * outputDimension} values; got {logits.Length}.", nameof(logits));
        }

        var values = new float[labelCount * outputDimension];
        var counts = new int[labelCount];
        for (var i = 0; i < labels.Length; i++)
        {
            var y = labels[i];
            if ((ulong)y >= (ulong)labelCount)
            {
                throw new ArgumentException($"Label {y} of sample {i} is outside [0, {labelCount}).", nameof(labels));
            }

            var row = values.AsSpan((int)y * outputDimension, outputDimension);
            TensorPrimitives.Add(row, logits.Slice(i * outputDimension, outputDimension), row);
            counts[y]++;
        }

        for (var r = 0; r < labelCount; r++)
        {
            if (counts[r] > 0)
            {
                var row = values.AsSpan(r * outputDimension, outputDimension);
                TensorPrimitives.Multiply(row, 1f / counts[r], row);
            }
        }

        return new Prototype(labelCount, outputDimension, values, counts);
    }

    /// <summary>
    /// Squared Euclidean distance to a centre (R × D), summed only over the rows in <paramref name="rowMask"/>
    /// (all rows when empty). Comparing an old and a new window over the labels present in both keeps a label that
    /// merely disappeared (label drift) from looking like a changed concept.
    /// </summary>
    public float SquaredDistanceTo(ReadOnlySpan<float> centre, ReadOnlySpan<bool> rowMask = default)
    {
        if (centre.Length != Values.Length)
        {
            throw new ArgumentException($"The centre has {centre.Length} values; the prototype has {Values.Length}.", nameof(centre));
        }

        if (rowMask.IsEmpty)
        {
            return SquaredDistance(Values, centre);
        }

        float sum = 0;
        for (var r = 0; r < LabelCount; r++)
        {
            if (rowMask[r])
            {
                sum += SquaredDistance(Row(r), centre.Slice(r * OutputDimension, OutputDimension));
            }
        }

        return sum;
    }

    /// <summary>Index of the nearest centre (centres: k × (R·D), row-major) over the masked rows.</summary>
    public int NearestCentre(ReadOnlySpan<float> centres, int k, ReadOnlySpan<bool> rowMask = default)
    {
        var d = Values.Length;
        if (k <= 0 || centres.Length != k * d)
        {
            throw new ArgumentException($"{k} centres of {d} values need {k * d} values; got {centres.Length}.", nameof(centres));
        }

        var best = 0;
        var bestDistance = float.PositiveInfinity;
        for (var c = 0; c < k; c++)
        {
            var distance = SquaredDistanceTo(centres.Slice(c * d, d), rowMask);
            if (distance < bestDistance)
            {
                bestDistance = distance;
                best = c;
            }
        }

        return best;
    }

    /// <summary>
    /// Fraction of the labels present in both prototypes whose row in <paramref name="current"/> is nearer to the same
    /// label's row in <paramref name="previous"/> than to any other label's row. Near 1 when the labelling is unchanged
    /// (inputs may have moved, but class r still looks most like class r did), near 0 when labels were remapped (the row
    /// of label r now looks like the old row of another label). NaN when fewer than two labels are shared.
    /// </summary>
    public static double RowAlignment(Prototype previous, Prototype current)
    {
        var shared = SharedRows(previous, current);
        var labels = Enumerable.Range(0, shared.Length).Where(r => shared[r]).ToArray();
        if (labels.Length < 2)
        {
            return double.NaN;
        }

        var aligned = 0;
        foreach (var r in labels)
        {
            var best = -1;
            var bestDistance = float.PositiveInfinity;
            foreach (var s in labels)
            {
                var distance = SquaredDistance(current.Row(r), previous.Row(s));
                if (distance < bestDistance)
                {
                    bestDistance = distance;
                    best = s;
                }
            }

            aligned += best == r ? 1 : 0;
        }

        return (double)aligned / labels.Length;
    }

    /// <summary>Rows (labels) present in both prototypes.</summary>
    public static bool[] SharedRows(Prototype a, Prototype b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.LabelCount != b.LabelCount || a.OutputDimension != b.OutputDimension)
        {
            throw new ArgumentException($"Prototypes of shape {a.LabelCount}×{a.OutputDimension} and {b.LabelCount}×{b.OutputDimension} cannot be compared.");
        }

        var mask = new bool[a.LabelCount];
        for (var r = 0; r < mask.Length; r++)
        {
            mask[r] = a.Counts[r] > 0 && b.Counts[r] > 0;
        }

        return mask;
    }

    internal static float SquaredDistance(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        var e = TensorPrimitives.Distance(x, y);
        return e * e;
    }
}
