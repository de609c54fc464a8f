using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Geometric median by smoothed Weiszfeld iterations (RFA: Pillutla, Kakade, Harchaoui, "Robust Aggregation for
/// Federated Learning", IEEE TSP 2022): starting from z₀, repeat T times
/// β_i = α_i / max(ν, ‖z − Δ_i‖),  z ← Σ_i β_i·Δ_i / Σ_i β_i,
/// with α_i the normalised weights. Defaults ν = 0.1, T = 8, z₀ = 0 (ByzFL) or the previous aggregate
/// (<see cref="WarmStart"/>). Breakdown point 1/2: tolerates f &lt; n/2.
/// <example>
/// ByzFL's example: rows [1, 2, 3], [4, 5, 6], [7, 8, 9], ν = 0.1, T = 3, z₀ = 0 gives
/// [3.78788764, 4.78788764, 5.78788764].
/// </example>
/// </summary>
public sealed class GeometricMedianRule : AggregationRule
{
    private float[]? _previous;

    public GeometricMedianRule(int f = 0, double nu = 0.1, int iterations = 8, bool warmStart = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(nu);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(iterations);
        F = f;
        Nu = nu;
        Iterations = iterations;
        WarmStart = warmStart;
    }

    public int F { get; }

    /// <summary>ν, the smoothing floor on distances (avoids division by zero at a data point).</summary>
    public double Nu { get; }

    /// <summary>T, the number of Weiszfeld steps.</summary>
    public int Iterations { get; }

    /// <summary>Start from the previous call's aggregate instead of zero (when the dimension matches).</summary>
    public bool WarmStart { get; }

    public override string Name => "geomed";

    protected override void CheckCount(int count) => RequireHonestMajority(count, F);

    protected override void AggregateCore(UpdateBatch updates, Span<float> result)
    {
        int n = updates.Count;
        if (WarmStart && _previous is { } previous && previous.Length == result.Length)
        {
            previous.CopyTo(result);
        }
        else
        {
            result.Clear();
        }

        var alpha = updates.NormalizedWeights();
        var distances = new double[n];
        var beta = new double[n];
        ReweightedIteration.Step(updates, [], 1.0, result, distances);
        for (int t = 0; t < Iterations; t++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
            {
                beta[i] = alpha[i] / Math.Max(Nu, Math.Sqrt(distances[i]));
                sum += beta[i];
            }

            for (int i = 0; i < n; i++)
            {
                beta[i] /= sum;
            }

            ReweightedIteration.Step(updates, beta, 0.0, result, t + 1 < Iterations ? distances : null);
        }

        if (WarmStart)
        {
            _previous = result.ToArray();
        }
    }
}
