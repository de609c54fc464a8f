using System.Globalization;
using System.Numerics.Tensors;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// The fixed-curvature surrogate of FedMM for multinomial logistic regression (algorithms.md §5: s = (H, b),
/// T = H⁻¹b then prox). For the mean softmax cross-entropy f of a linear model on inputs x̃ = (x, 1) (x the features
/// the Linear layer sees, after the model's own input standardisation), Böhning's bound ∇²f ≼ H_B =
/// ½(I_K − 11ᵀ/K) ⊗ E[x̃x̃ᵀ] gives the majorizer f(θ') ≤ f(θ) + ⟨∇f(θ), θ' − θ⟩ + ½‖θ' − θ‖²_H for any H ≽ H_B, i.e.
/// ψ(θ') = ½θ'ᵀHθ', and s = (H, b = Hθ − ∇f(θ)).
/// <para>[design] H is diagonal, not the full H of algorithms.md: a full H has d² = 62 M entries for Fashion-MNIST
/// (d = 7850), too big for the wire and for T. A valid diagonal majorizer of H_B: ½(I − 11ᵀ/K) ≼ ½I, and
/// E[x̃x̃ᵀ] ≼ diag(Σ_j |E[x̃_i x̃_j]|) (Gershgorin: a symmetric matrix is ≼ the diagonal of its absolute row sums),
/// with Σ_j |E[x̃_i x̃_j]| ≤ E[|x̃_i|·‖x̃‖₁]; so h_i = ½·E[|x̃_i|·‖x̃‖₁] (O(N·p) to compute) majorizes, the same for every
/// class. The statistic carries h once per input (p + 1 values, the last for the bias), not once per coordinate, so
/// m = d + p + 1 rather than 2d: the K copies would be equal and only cost bytes.</para>
/// <para>Layout of θ: the zoo logreg's (ModelZoo "logreg": Flatten, then Gemm with transB): fc1.weight [K, p]
/// row-major (coordinate k·p + i is class k, input i), then fc1.bias [K] (coordinate K·p + k). Layout of s: h [p + 1],
/// then b [d] in θ's layout.</para>
/// <para>T(s) is closed form with g = λ‖θ‖₁: θ_j = argmin λ|θ_j| + ½h_jθ_j² − b_jθ_j = soft(b_j/h_j, λ/h_j)
/// (θ_j = 0 where h_j = 0: an input that is always 0 has no gradient either).</para>
/// <example>h = 2, λ = 1, b = [5, −1, −4] on three coordinates: θ = soft([2.5, −0.5, −2], 0.5) = [2, 0, −1.5].</example>
/// </summary>
public sealed class LogisticCurvatureSurrogate : ISurrogate
{
    public LogisticCurvatureSurrogate(int featureCount, int classCount, double l1 = 0, float inputMean = 0f, float inputStd = 1f)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(featureCount);
        ArgumentOutOfRangeException.ThrowIfLessThan(classCount, 2);
        if (!(l1 >= 0) || !double.IsFinite(l1))
        {
            throw new ArgumentOutOfRangeException(nameof(l1), l1, "λ must be a finite number ≥ 0.");
        }

        if (!(inputStd > 0) || !float.IsFinite(inputMean))
        {
            throw new ArgumentOutOfRangeException(nameof(inputStd), "Input standardisation needs a finite mean and a positive std.");
        }

        FeatureCount = featureCount;
        ClassCount = classCount;
        L1 = l1;
        InputMean = inputMean;
        InputStd = inputStd;
    }

    /// <summary>p, the inputs of the Linear layer.</summary>
    public int FeatureCount { get; }

    /// <summary>K.</summary>
    public int ClassCount { get; }

    public double L1 { get; }

    /// <summary>The model's own input standardisation (ModelZoo's inputMean / inputStd): x = (raw − mean)/std.</summary>
    public float InputMean { get; }

    public float InputStd { get; }

    public string Name => string.Create(CultureInfo.InvariantCulture, $"logistic-diagonal(p={FeatureCount}, K={ClassCount}, l1={L1:G4})");

    /// <summary>d = K·(p + 1).</summary>
    public int ParameterCount => ClassCount * (FeatureCount + 1);

    /// <summary>m = (p + 1) + d: h, then b.</summary>
    public int StatisticLength => FeatureCount + 1 + ParameterCount;

    /// <summary>Which entry of h (0..p) coordinate <paramref name="j"/> of θ reads.</summary>
    public int CurvatureIndex(int j) => j < ClassCount * FeatureCount ? j % FeatureCount : FeatureCount;

    public void Statistic(ReadOnlySpan<float> parameters, IDeviceObjective objective, Span<float> statistic)
    {
        ArgumentNullException.ThrowIfNull(objective);
        CheckLengths(parameters.Length, statistic.Length);
        if (objective.FeatureSize != FeatureCount)
        {
            throw new ArgumentException($"{Name}: the device's samples have {objective.FeatureSize} features, the model {FeatureCount}.");
        }

        var h = statistic[..(FeatureCount + 1)];
        var b = statistic[(FeatureCount + 1)..];
        Curvature(objective.Features, FeatureCount, InputMean, InputStd, h);
        objective.Gradient(parameters, b);
        for (int j = 0; j < b.Length; j++)
        {
            b[j] = h[CurvatureIndex(j)] * parameters[j] - b[j];
        }
    }

    public void Map(ReadOnlySpan<float> statistic, Span<float> parameters)
    {
        CheckLengths(parameters.Length, statistic.Length);
        var h = statistic[..(FeatureCount + 1)];
        var b = statistic[(FeatureCount + 1)..];
        for (int j = 0; j < parameters.Length; j++)
        {
            double hj = h[CurvatureIndex(j)];
            parameters[j] = hj > 0 ? (float)SoftThreshold.Apply(b[j] / hj, L1 / hj) : 0f;
        }
    }

    public double Regularizer(ReadOnlySpan<float> parameters) => L1 * TensorPrimitives.SumOfMagnitudes(parameters);

    /// <summary>
    /// h_i = ½·E[|x̃_i|·‖x̃‖₁] over the rows of <paramref name="features"/> (N × p, raw), x̃ = ((x − mean)/std, 1);
    /// writes p + 1 values (the last for the bias).
    /// </summary>
    public static void Curvature(ReadOnlySpan<float> features, int featureCount, float inputMean, float inputStd, Span<float> curvature)
    {
        if (curvature.Length != featureCount + 1)
        {
            throw new ArgumentException($"The curvature has {curvature.Length} entries; p + 1 = {featureCount + 1} expected.", nameof(curvature));
        }

        int n = features.Length / featureCount;
        if (n == 0 || n * featureCount != features.Length)
        {
            throw new ArgumentException($"{features.Length} feature values are not a positive multiple of {featureCount}.", nameof(features));
        }

        var sums = new double[featureCount + 1];
        var row = new double[featureCount + 1];
        for (int r = 0; r < n; r++)
        {
            QuadraticSurrogate.StandardizedRow(features.Slice(r * featureCount, featureCount), inputMean, inputStd, row);
            double l1 = 0;
            for (int i = 0; i <= featureCount; i++)
            {
                l1 += Math.Abs(row[i]);
            }

            for (int i = 0; i <= featureCount; i++)
            {
                sums[i] += Math.Abs(row[i]) * l1;
            }
        }

        for (int i = 0; i <= featureCount; i++)
        {
            curvature[i] = (float)(0.5 * sums[i] / n);
        }
    }

    private void CheckLengths(int parameters, int statistic)
    {
        if (parameters != ParameterCount || statistic != StatisticLength)
        {
            throw new ArgumentException($"{Name}: θ has {parameters} and s {statistic} coordinates; {ParameterCount} and {StatisticLength} expected.");
        }
    }
}
