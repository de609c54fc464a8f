using System.Globalization;
using System.Numerics.Tensors;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// The quadratic (L-smooth) surrogate of FedMM (arXiv 2507.17534, §5 of algorithms.md): for an L-smooth f,
/// f(θ') ≤ f(θ) + ⟨∇f(θ), θ' − θ⟩ + (L/2)‖θ' − θ‖², i.e. ψ(θ') = (L/2)‖θ'‖², φ(θ') = θ', and the statistic
/// s̄(θ) = Lθ − ∇f(θ) (m = d). The map is the proximal gradient step T(s) = prox_{g/L}(s/L); with g = λ‖θ‖₁ that is
/// soft(s/L, λ/L) per coordinate, with λ = 0 it is s/L. With a non-smooth g, T(mean S_i) ≠ mean T(S_i): aggregating
/// statistics differs from aggregating parameters, which is the point of the paper.
/// <example>L = 2, λ = 1, s = [5, −1, −4]: T(s) = soft([2.5, −0.5, −2], 0.5) = [2, 0, −1.5].</example>
/// <para>L must be known on the server (it maps Ŝ without any data): configure it, or bound it from the features with
/// <see cref="SoftmaxSmoothnessBound"/> (the harness does).</para>
/// </summary>
public sealed class QuadraticSurrogate : ISurrogate
{
    public QuadraticSurrogate(int parameterCount, double smoothness, double l1 = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(parameterCount);
        if (!(smoothness > 0) || !double.IsFinite(smoothness))
        {
            throw new ArgumentOutOfRangeException(nameof(smoothness), smoothness, "L must be a positive finite number.");
        }

        if (!(l1 >= 0) || !double.IsFinite(l1))
        {
            throw new ArgumentOutOfRangeException(nameof(l1), l1, "λ must be a finite number ≥ 0.");
        }

        ParameterCount = parameterCount;
        Smoothness = smoothness;
        L1 = l1;
    }

    /// <summary>L, the smoothness constant of every f_i.</summary>
    public double Smoothness { get; }

    /// <summary>λ of g = λ‖θ‖₁.</summary>
    public double L1 { get; }

    public string Name => string.Create(CultureInfo.InvariantCulture, $"quadratic(L={Smoothness:G4}, l1={L1:G4})");

    public int ParameterCount { get; }

    public int StatisticLength => ParameterCount;

    public void Statistic(ReadOnlySpan<float> parameters, IDeviceObjective objective, Span<float> statistic)
    {
        ArgumentNullException.ThrowIfNull(objective);
        CheckLengths(parameters.Length, statistic.Length);
        objective.Gradient(parameters, statistic);
        // s = Lθ − ∇f(θ), written over the gradient.
        TensorPrimitives.Negate(statistic, statistic);
        TensorPrimitives.MultiplyAdd(parameters, (float)Smoothness, statistic, statistic);
    }

    public void Map(ReadOnlySpan<float> statistic, Span<float> parameters)
    {
        CheckLengths(parameters.Length, statistic.Length);
        double threshold = L1 / Smoothness;
        for (int j = 0; j < parameters.Length; j++)
        {
            parameters[j] = (float)SoftThreshold.Apply(statistic[j] / Smoothness, threshold);
        }
    }

    public double Regularizer(ReadOnlySpan<float> parameters) => L1 * TensorPrimitives.SumOfMagnitudes(parameters);

    /// <summary>
    /// A smoothness constant of the mean softmax cross-entropy of a linear model on these features: its Hessian is
    /// ≼ ½(I_K − 11ᵀ/K) ⊗ E[x̃x̃ᵀ] ≼ ½·λ_max(E[x̃x̃ᵀ])·I (Böhning 1992), x̃ = ((x − mean)/std, 1) the input the Linear
    /// layer sees. Returns ½·λ_max(E[x̃x̃ᵀ]), computed by power iteration (O(N·p) per iteration) and raised by 1 % to
    /// stay an upper bound after finitely many iterations. A fleet configures the value (L=…) so devices and server agree.
    /// </summary>
    public static double SoftmaxSmoothnessBound(ReadOnlySpan<float> features, int featureSize, float inputMean = 0f, float inputStd = 1f, int iterations = 50)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(featureSize);
        int n = features.Length / featureSize;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        int p = featureSize + 1;
        var v = new double[p];
        Array.Fill(v, 1.0 / Math.Sqrt(p));
        var w = new double[p];
        var x = new double[p];
        double lambda = 0;
        for (int it = 0; it < iterations; it++)
        {
            Array.Clear(w);
            for (int r = 0; r < n; r++)
            {
                StandardizedRow(features.Slice(r * featureSize, featureSize), inputMean, inputStd, x);
                double dot = 0;
                for (int i = 0; i < p; i++)
                {
                    dot += x[i] * v[i];
                }

                for (int i = 0; i < p; i++)
                {
                    w[i] += dot * x[i];
                }
            }

            double norm = Math.Sqrt(w.Sum(t => t * t)) / n;
            lambda = norm;
            for (int i = 0; i < p; i++)
            {
                v[i] = w[i] / (norm * n);
            }
        }

        return 0.5 * lambda * 1.01;
    }

    /// <summary>x̃ = ((x − mean)/std, 1).</summary>
    internal static void StandardizedRow(ReadOnlySpan<float> row, float mean, float std, Span<double> destination)
    {
        for (int i = 0; i < row.Length; i++)
        {
            destination[i] = (row[i] - mean) / std;
        }

        destination[row.Length] = 1.0;
    }

    private void CheckLengths(int parameters, int statistic)
    {
        if (parameters != ParameterCount || statistic != ParameterCount)
        {
            throw new ArgumentException($"{Name}: θ has {parameters} and s {statistic} coordinates; both must have {ParameterCount}.");
        }
    }
}
