using System.Numerics.Tensors;

namespace FedEdge.Aggregation.Diagnostics;

/// <summary>
/// Monotonicity of the aggregated gradient operator across rounds (algorithms.md §7; arXiv 2606.28123): a
/// positively affine rule keeps ⟨θ_t − θ_{t−1}, F_t − F_{t−1}⟩ ≥ 0 for a monotone problem, non-affine rules
/// (median, Krum, clipping, sign) can break it. Feed each round's global model θ_t and the aggregated gradient
/// F_t (for an aggregated update Δ = x_i − x use <see cref="ObserveUpdate"/>, which takes F = −Δ). Reports the
/// fraction of consecutive pairs with a negative inner product and the gap between the last and the averaged
/// iterate. O(d) memory.
/// <example>θ: [0] → [1] → [2], F: [0] → [1] → [0.5]: products 1·1 = 1 ≥ 0 and 1·(−0.5) &lt; 0, fraction 1/2.</example>
/// </summary>
public sealed class MonotonicityMonitor(int dimension)
{
    private readonly float[] _previousModel = new float[dimension];
    private readonly float[] _previousGradient = new float[dimension];
    private readonly double[] _modelSum = new double[dimension];
    private readonly float[] _lastModel = new float[dimension];

    public int Dimension { get; } = dimension;

    public int Rounds { get; private set; }

    /// <summary>Consecutive pairs compared so far (Rounds − 1).</summary>
    public int Pairs => Math.Max(0, Rounds - 1);

    public int Violations { get; private set; }

    /// <summary>Violations / pairs (0 before the second round).</summary>
    public double ViolationFraction => Pairs == 0 ? 0 : (double)Violations / Pairs;

    /// <summary>The last ⟨Δθ, ΔF⟩ (NaN before the second round).</summary>
    public double LastInnerProduct { get; private set; } = double.NaN;

    public void Observe(ReadOnlySpan<float> model, ReadOnlySpan<float> aggregatedGradient) =>
        Observe(model, aggregatedGradient, 1f);

    public void ObserveUpdate(ReadOnlySpan<float> model, ReadOnlySpan<float> aggregatedUpdate) =>
        Observe(model, aggregatedUpdate, -1f);

    /// <summary>‖θ_last − θ̄‖, θ̄ the average of all observed models.</summary>
    public double LastToAverageGap()
    {
        if (Rounds == 0)
        {
            return 0;
        }

        double sum = 0;
        for (int j = 0; j < Dimension; j++)
        {
            double e = _lastModel[j] - (_modelSum[j] / Rounds);
            sum += e * e;
        }

        return Math.Sqrt(sum);
    }

    private void Observe(ReadOnlySpan<float> model, ReadOnlySpan<float> gradient, float sign)
    {
        if (model.Length != Dimension || gradient.Length != Dimension)
        {
            throw new ArgumentException($"Expected a model and an aggregate of {Dimension} coordinates.");
        }

        if (Rounds > 0)
        {
            double product = 0;
            for (int j = 0; j < Dimension; j++)
            {
                product += (double)(model[j] - _previousModel[j]) * ((sign * gradient[j]) - _previousGradient[j]);
            }

            LastInnerProduct = product;
            if (product < 0)
            {
                Violations++;
            }
        }

        model.CopyTo(_previousModel);
        TensorPrimitives.Multiply(gradient, sign, _previousGradient);
        model.CopyTo(_lastModel);
        for (int j = 0; j < Dimension; j++)
        {
            _modelSum[j] += model[j];
        }

        Rounds++;
    }
}
