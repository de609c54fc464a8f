using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Centered clipping (Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust Optimization", ICML 2021):
/// from v₀ = the previous aggregate, repeat L times
/// v ← v + Σ_i α_i·(Δ_i − v)·min(1, τ / ‖Δ_i − v‖),
/// α_i the normalised weights (1/n unweighted). Defaults τ = 10, L = 3. Each update moves v by at most α_i·τ per
/// step, which bounds a Byzantine minority's pull; the rule is stateful (v₀ is the last result, zero at first).
/// <example>
/// τ = 1, L = 1, v₀ = 0, 1-D updates 0.5 and 10: v = ½·0.5 + ½·10·min(1, 1/10) = 0.25 + 0.5 = 0.75.
/// </example>
/// </summary>
public sealed class CenteredClippingRule : AggregationRule
{
    private float[]? _previous;

    public CenteredClippingRule(int f = 0, double tau = 10.0, int iterations = 3)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tau);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(iterations);
        F = f;
        Tau = tau;
        Iterations = iterations;
    }

    public int F { get; }

    /// <summary>τ, the clipping radius around the current centre.</summary>
    public double Tau { get; }

    /// <summary>L, the number of clipping steps.</summary>
    public int Iterations { get; }

    public override string Name => "centered-clip";

    /// <summary>Sets v₀ for the next call (e.g. restored from the aggregator's persisted state).</summary>
    public void SetCentre(ReadOnlySpan<float> centre) => _previous = centre.ToArray();

    protected override void CheckCount(int count) => RequireHonestMajority(count, F);

    protected override void AggregateCore(UpdateBatch updates, Span<float> result)
    {
        int n = updates.Count;
        if (_previous is { } previous && previous.Length == result.Length)
        {
            previous.CopyTo(result);
        }
        else
        {
            result.Clear();
        }

        var alpha = updates.NormalizedWeights();
        var distances = new double[n];
        var coefficients = new double[n];
        ReweightedIteration.Step(updates, [], 1.0, result, distances);
        for (int t = 0; t < Iterations; t++)
        {
            double moved = 0;
            for (int i = 0; i < n; i++)
            {
                double norm = Math.Sqrt(distances[i]);
                coefficients[i] = alpha[i] * (norm <= Tau ? 1.0 : Tau / norm);
                moved += coefficients[i];
            }

            // v + Σ c_i (Δ_i − v) = (1 − Σ c_i)·v + Σ c_i Δ_i
            ReweightedIteration.Step(updates, coefficients, 1.0 - moved, result, t + 1 < Iterations ? distances : null);
        }

        _previous = result.ToArray();
    }
}
