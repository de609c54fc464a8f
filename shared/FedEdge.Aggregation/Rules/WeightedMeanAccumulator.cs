using System.Numerics.Tensors;

namespace FedEdge.Aggregation.Rules;

/// <summary>How a weighted sum is turned into the aggregate.</summary>
public enum MeanNormalization
{
    /// <summary>Σ w_i Δ_i / Σ w_i: the FedAvg mean.</summary>
    SumOfWeights,

    /// <summary>Σ w_i Δ_i / K with K the number of updates: FedBuff's buffer, whose staleness weights are discounts.</summary>
    Count,
}

/// <summary>
/// Streaming weighted mean: keeps Σ w_i·Δ_i (float32, d coordinates) and Σ w_i. O(d) memory, no allocation per
/// update; each Add validates the update first so a bad one leaves the sum untouched.
/// <example>
/// Add([1, 2], 1); Add([3, 6], 3); Complete → [2.5, 5] (or [5, 10] with <see cref="MeanNormalization.Count"/>).
/// </example>
/// </summary>
public sealed class WeightedMeanAccumulator : IStreamingAggregator
{
    private readonly float[] _sum;
    private readonly UpdateValidator _validator;
    private double _weightSum;

    public WeightedMeanAccumulator(int dimension, MeanNormalization normalization = MeanNormalization.SumOfWeights)
    {
        _validator = new UpdateValidator(dimension);
        _sum = new float[dimension];
        Normalization = normalization;
    }

    public int Dimension => _sum.Length;

    public int Count { get; private set; }

    public MeanNormalization Normalization { get; }

    /// <summary>Σ w_i of the updates added so far.</summary>
    public double WeightSum => _weightSum;

    public void Add(ReadOnlySpan<float> update, float weight = 1f)
    {
        var check = _validator.Validate(update, weight);
        if (!check.IsValid)
        {
            throw new InvalidUpdateException(null, check.Reason!);
        }

        TensorPrimitives.MultiplyAdd(update, weight, _sum, _sum);
        _weightSum += weight;
        Count++;
    }

    /// <summary>Adds a compressed update without decoding it; it checks itself before touching the sum.</summary>
    public void Add(IAccumulableUpdate update, float weight = 1f)
    {
        ArgumentNullException.ThrowIfNull(update);
        var check = _validator.ValidateShape(update.Dimension, weight);
        if (!check.IsValid)
        {
            throw new InvalidUpdateException(null, check.Reason!);
        }

        if (update.AddTo(_sum, weight) is { } problem)
        {
            throw new InvalidUpdateException(null, problem);
        }

        _weightSum += weight;
        Count++;
    }

    public void Complete(Span<float> result)
    {
        if (result.Length != Dimension)
        {
            throw new ArgumentException($"The result has {result.Length} coordinates, expected {Dimension}.", nameof(result));
        }

        double denominator = Normalization == MeanNormalization.Count ? Count : _weightSum;
        if (denominator <= 0)
        {
            throw new InvalidOperationException("No update (or only zero weights) was added; there is no mean.");
        }

        TensorPrimitives.Multiply(_sum, (float)(1.0 / denominator), result);
    }

    public void Reset()
    {
        Array.Clear(_sum);
        _weightSum = 0;
        Count = 0;
    }
}
