namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// A majorizing surrogate of FedMM (algorithms.md §5; arXiv 2507.17534, in the form of FedEM, Dieuleveut et al. 2021):
/// the problem min_θ g(θ) + f(θ) is solved through statistics s, never parameters. A device computes its statistic
/// S_i = s̄(θ) at the broadcast θ (<see cref="Statistic"/>); the server aggregates statistics into Ŝ and maps them back,
/// θ = T(Ŝ) = argmin g(θ) + ψ(θ) − ⟨Ŝ, φ(θ)⟩ (<see cref="Map"/>).
/// </summary>
public interface ISurrogate
{
    /// <summary>What it is, e.g. "quadratic(L=4, l1=1e-4)".</summary>
    string Name { get; }

    /// <summary>d, the length of θ.</summary>
    int ParameterCount { get; }

    /// <summary>m, the length of a statistic s.</summary>
    int StatisticLength { get; }

    /// <summary>Device side: S_i = s̄(θ) over the device's own data.</summary>
    void Statistic(ReadOnlySpan<float> parameters, IDeviceObjective objective, Span<float> statistic);

    /// <summary>Server side (and wherever θ is needed): θ = T(s).</summary>
    void Map(ReadOnlySpan<float> statistic, Span<float> parameters);

    /// <summary>g(θ), the convex regulariser that <see cref="Map"/> handles exactly (0 when there is none).</summary>
    double Regularizer(ReadOnlySpan<float> parameters);
}

/// <summary>A device's local objective f_i as a surrogate reads it: its loss and gradient, and its samples' features.</summary>
public interface IDeviceObjective
{
    /// <summary>N_i, the device's samples.</summary>
    int SampleCount { get; }

    /// <summary>Values per sample in <see cref="Features"/>.</summary>
    int FeatureSize { get; }

    /// <summary>The samples' features, N_i × <see cref="FeatureSize"/>, row-major (surrogates that read data moments).</summary>
    ReadOnlySpan<float> Features { get; }

    /// <summary>Mean loss f_i(θ) over the device's data; writes ∇f_i(θ) into <paramref name="gradient"/>.</summary>
    double Gradient(ReadOnlySpan<float> parameters, Span<float> gradient);
}
