using System.Numerics;
using System.Runtime.InteropServices;

namespace FedEdge.Aggregation;

/// <summary>The outcome of validating one update: valid, or refused with a reason.</summary>
public readonly record struct UpdateValidation(bool IsValid, string? Reason)
{
    public static UpdateValidation Valid => new(true, null);

    public static UpdateValidation Refused(string reason) => new(false, reason);
}

/// <summary>
/// Gatekeeper in front of every rule: an update must have the expected dimension, only finite coordinates and a
/// finite non-negative weight. One NaN would poison a mean and silently break order statistics (NaN compares
/// false), so rules assume validated input and this is the one place that checks it.
/// </summary>
public sealed class UpdateValidator
{
    private const int ExponentMask = 0x7F80_0000;

    public UpdateValidator(int dimension)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        Dimension = dimension;
    }

    /// <summary>The dimension every update must have.</summary>
    public int Dimension { get; }

    /// <summary>Checks one update and its weight; never throws for bad data.</summary>
    public UpdateValidation Validate(ReadOnlySpan<float> update, double weight = 1.0)
    {
        UpdateValidation shape = ValidateShape(update.Length, weight);
        if (!shape.IsValid)
        {
            return shape;
        }

        int bad = IndexOfNonFinite(update);
        return bad < 0 ? UpdateValidation.Valid : UpdateValidation.Refused(DescribeNonFinite(update, bad));
    }

    /// <summary>The dimension and weight checks alone, for an update that checks its own coordinates (<see cref="IAccumulableUpdate"/>).</summary>
    public UpdateValidation ValidateShape(int length, double weight)
    {
        if (length != Dimension)
        {
            return UpdateValidation.Refused($"it has {length} coordinates, expected {Dimension}");
        }

        return double.IsFinite(weight) && weight >= 0
            ? UpdateValidation.Valid
            : UpdateValidation.Refused($"its weight {weight} is not a finite non-negative number");
    }

    /// <summary>Index of the first NaN or ±Inf in <paramref name="values"/>, or −1 (SIMD on the exponent bits).</summary>
    public static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        var bits = MemoryMarshal.Cast<float, int>(values);
        int i = 0;
        if (Vector.IsHardwareAccelerated && bits.Length >= Vector<int>.Count)
        {
            var mask = new Vector<int>(ExponentMask);
            var vectors = MemoryMarshal.Cast<int, Vector<int>>(bits);
            for (int v = 0; v < vectors.Length; v++)
            {
                if (Vector.EqualsAny(vectors[v] & mask, mask))
                {
                    i = v * Vector<int>.Count;
                    break;
                }

                i = (v + 1) * Vector<int>.Count;
            }
        }

        for (; i < bits.Length; i++)
        {
            if ((bits[i] & ExponentMask) == ExponentMask)
            {
                return i;
            }
        }

        return -1;
    }

    internal static string DescribeNonFinite(ReadOnlySpan<float> update, int index) =>
        $"coordinate {index} is {(float.IsNaN(update[index]) ? "NaN" : update[index] > 0 ? "+Inf" : "-Inf")}";

    /// <summary>Validates every row and weight of a batch (rows in parallel), throwing for the first bad one.</summary>
    public static void ThrowIfInvalid(UpdateBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.IsWeighted)
        {
            var w = batch.Weights.Span;
            double sum = 0;
            for (int i = 0; i < w.Length; i++)
            {
                if (!float.IsFinite(w[i]) || w[i] < 0)
                {
                    throw new InvalidUpdateException(i, $"update {i} has weight {w[i]}, not a finite non-negative number");
                }

                sum += w[i];
            }

            if (sum <= 0)
            {
                throw new InvalidUpdateException(null, "the update weights sum to zero");
            }
        }

        var badIndex = new int[batch.Count];
        var data = batch.Data;
        int d = batch.Dimension;
        Parallel.For(0, batch.Count, i => badIndex[i] = IndexOfNonFinite(data.Span.Slice(i * d, d)));
        for (int i = 0; i < badIndex.Length; i++)
        {
            if (badIndex[i] >= 0)
            {
                throw new InvalidUpdateException(i, $"update {i}: {DescribeNonFinite(batch.Row(i), badIndex[i])}");
            }
        }
    }
}
