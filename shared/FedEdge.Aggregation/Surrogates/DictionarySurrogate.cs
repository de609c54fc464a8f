using System.Globalization;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// Dictionary learning as FedMM's non-convex case (Mairal, Bach, Ponce, Sapiro, "Online Learning for Matrix
/// Factorization and Sparse Coding", JMLR 2010; algorithms.md §5). The problem is
/// min_D mean_x min_α ½‖x − Dα‖² + λ‖α‖₁ over D ∈ C = {p × k, ‖d_j‖ ≤ 1}. At the current D the codes α(x) are fixed;
/// the surrogate ½tr(DᵀDA) − tr(DᵀB) (+ constants) majorizes it with s = (A = mean αα ᵀ, B = mean xαᵀ), and
/// T(s) = argmin_{D ∈ C} ½tr(DᵀDA) − tr(DᵀB) by Mairal's block-coordinate descent (Algorithm 2), run to convergence.
/// <para>Layout: θ = D column-major (atom j at j·p .. j·p + p − 1); s = A [k × k] row-major, then B column-major like D
/// (column j = mean x·α_j at k² + j·p). m = k² + p·k. The codes are lasso solutions by FISTA (Beck &amp; Teboulle 2009).</para>
/// <para><see cref="Map"/> starts the block-coordinate descent from the D it is given (the server's current model), as
/// Mairal warm-starts; the minimiser is unique when A ≻ 0, so the start matters only for atoms no code uses
/// (A_jj = 0), which keep their value.</para>
/// </summary>
public sealed class DictionarySurrogate : ISurrogate
{
    private const int MaxSweeps = 2000;
    private const double SweepTolerance = 1e-7;

    public DictionarySurrogate(int patchSize, int atoms, double penalty, int codingIterations = 100)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(patchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(atoms);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(codingIterations);
        if (!(penalty >= 0) || !double.IsFinite(penalty))
        {
            throw new ArgumentOutOfRangeException(nameof(penalty), penalty, "λ_dl must be a finite number ≥ 0.");
        }

        PatchSize = patchSize;
        Atoms = atoms;
        Penalty = penalty;
        CodingIterations = codingIterations;
    }

    /// <summary>p, values per patch (64 for 8 × 8).</summary>
    public int PatchSize { get; }

    /// <summary>k, atoms of the dictionary.</summary>
    public int Atoms { get; }

    /// <summary>λ_dl, the lasso penalty of the codes.</summary>
    public double Penalty { get; }

    /// <summary>FISTA iterations per code.</summary>
    public int CodingIterations { get; }

    public string Name => string.Create(CultureInfo.InvariantCulture, $"dictionary(p={PatchSize}, k={Atoms}, lambda={Penalty:G4})");

    public int ParameterCount => PatchSize * Atoms;

    public int StatisticLength => Atoms * Atoms + PatchSize * Atoms;

    /// <summary>The constraint ‖d_j‖ ≤ 1 is part of T; g = 0.</summary>
    public double Regularizer(ReadOnlySpan<float> parameters) => 0;

    public void Statistic(ReadOnlySpan<float> parameters, IDeviceObjective objective, Span<float> statistic)
    {
        ArgumentNullException.ThrowIfNull(objective);
        Check(parameters.Length, statistic.Length);
        if (objective.FeatureSize != PatchSize)
        {
            throw new ArgumentException($"{Name}: the device's samples have {objective.FeatureSize} values, a patch {PatchSize}.");
        }

        int k = Atoms, p = PatchSize, n = objective.SampleCount;
        var a = new double[k * k];
        var b = new double[p * k];
        var coder = new SparseCoder(parameters, p, k, Penalty, CodingIterations);
        var code = new double[k];
        var features = objective.Features;
        for (int r = 0; r < n; r++)
        {
            var x = features.Slice(r * p, p);
            coder.Encode(x, code);
            for (int i = 0; i < k; i++)
            {
                double ci = code[i];
                if (ci == 0)
                {
                    continue;
                }

                for (int j = 0; j < k; j++)
                {
                    a[i * k + j] += ci * code[j];
                }

                for (int t = 0; t < p; t++)
                {
                    b[i * p + t] += x[t] * ci;
                }
            }
        }

        double scale = n == 0 ? 0 : 1.0 / n;
        for (int i = 0; i < a.Length; i++)
        {
            statistic[i] = (float)(a[i] * scale);
        }

        for (int i = 0; i < b.Length; i++)
        {
            statistic[a.Length + i] = (float)(b[i] * scale);
        }
    }

    /// <summary>Mairal et al. 2010, Algorithm 2: for each atom j, u_j = (b_j − D·a_j)/A_jj + d_j, d_j = u_j / max(‖u_j‖, 1);
    /// sweeps until no atom moves by more than 1e-7 (relative), at most 2000 sweeps.</summary>
    public void Map(ReadOnlySpan<float> statistic, Span<float> parameters)
    {
        Check(parameters.Length, statistic.Length);
        int k = Atoms, p = PatchSize;
        var a = statistic[..(k * k)];
        var b = statistic[(k * k)..];
        var d = new double[p * k];
        for (int i = 0; i < d.Length; i++)
        {
            d[i] = float.IsFinite(parameters[i]) ? parameters[i] : 0;
        }

        var u = new double[p];
        for (int sweep = 0; sweep < MaxSweeps; sweep++)
        {
            double moved = 0, size = 0;
            for (int j = 0; j < k; j++)
            {
                double ajj = a[j * k + j];
                if (!(ajj > 0))
                {
                    continue;
                }

                // u = (b_j − D a_j)/A_jj + d_j, with A symmetric (column j = row j).
                for (int t = 0; t < p; t++)
                {
                    double dAj = 0;
                    for (int i = 0; i < k; i++)
                    {
                        dAj += d[i * p + t] * a[i * k + j];
                    }

                    u[t] = (b[j * p + t] - dAj) / ajj + d[j * p + t];
                }

                double norm = Math.Sqrt(u.Sum(v => v * v));
                double shrink = 1.0 / Math.Max(norm, 1.0);
                for (int t = 0; t < p; t++)
                {
                    double next = u[t] * shrink;
                    moved = Math.Max(moved, Math.Abs(next - d[j * p + t]));
                    size = Math.Max(size, Math.Abs(next));
                    d[j * p + t] = next;
                }
            }

            if (moved <= SweepTolerance * Math.Max(size, 1e-12))
            {
                break;
            }
        }

        for (int i = 0; i < d.Length; i++)
        {
            parameters[i] = (float)d[i];
        }
    }

    /// <summary>The dictionary-learning objective mean ½‖x − Dα‖² + λ‖α‖₁ over the rows of
    /// <paramref name="patches"/>, at the codes FISTA finds for D.</summary>
    public double Objective(ReadOnlySpan<float> dictionary, ReadOnlySpan<float> patches)
    {
        Check(dictionary.Length, StatisticLength);
        int p = PatchSize, n = patches.Length / p;
        var coder = new SparseCoder(dictionary, p, Atoms, Penalty, CodingIterations);
        var code = new double[Atoms];
        double total = 0;
        for (int r = 0; r < n; r++)
        {
            total += coder.Encode(patches.Slice(r * p, p), code);
        }

        return n == 0 ? 0 : total / n;
    }

    /// <summary>A starting dictionary: k patches drawn without replacement, each scaled to unit norm (Mairal et al.
    /// initialise from data the same way); a zero patch becomes a random unit atom.</summary>
    public float[] InitialDictionary(ReadOnlySpan<float> patches, int seed)
    {
        int p = PatchSize, n = patches.Length / p;
        var random = new Random(seed);
        var order = Enumerable.Range(0, n).ToArray();
        random.Shuffle(order);
        var d = new float[p * Atoms];
        for (int j = 0; j < Atoms; j++)
        {
            var atom = d.AsSpan(j * p, p);
            if (j < n)
            {
                patches.Slice(order[j] * p, p).CopyTo(atom);
            }

            double norm = Math.Sqrt(atom.ToArray().Sum(v => (double)v * v));
            if (norm < 1e-8)
            {
                for (int t = 0; t < p; t++)
                {
                    atom[t] = (float)(random.NextDouble() - 0.5);
                }

                norm = Math.Sqrt(atom.ToArray().Sum(v => (double)v * v));
            }

            for (int t = 0; t < p; t++)
            {
                atom[t] = (float)(atom[t] / norm);
            }
        }

        return d;
    }

    private void Check(int parameters, int statistic)
    {
        if (parameters != ParameterCount || statistic != StatisticLength)
        {
            throw new ArgumentException($"{Name}: D has {parameters} and s {statistic} coordinates; {ParameterCount} and {StatisticLength} expected.");
        }
    }
}

/// <summary>
/// Lasso codes min_α ½‖x − Dα‖² + λ‖α‖₁ by FISTA (Beck &amp; Teboulle, "A Fast Iterative Shrinkage-Thresholding
/// Algorithm", SIAM J. Imaging Sci. 2009) with step 1/L, L = the largest absolute row sum of G = DᵀD (Gershgorin, ≥
/// λ_max(G)). Precomputes G once per dictionary: each iteration is O(k²).
/// </summary>
public sealed class SparseCoder
{
    private readonly double[] _d;
    private readonly double[] _gram;
    private readonly double[] _dtx;
    private readonly double[] _y;
    private readonly double[] _previous;
    private readonly double _step;
    private readonly int _p;
    private readonly int _k;
    private readonly double _penalty;
    private readonly int _iterations;

    public SparseCoder(ReadOnlySpan<float> dictionary, int patchSize, int atoms, double penalty, int iterations)
    {
        _p = patchSize;
        _k = atoms;
        _penalty = penalty;
        _iterations = iterations;
        _d = new double[patchSize * atoms];
        for (int i = 0; i < _d.Length; i++)
        {
            _d[i] = dictionary[i];
        }

        _gram = new double[atoms * atoms];
        double lipschitz = 0;
        for (int i = 0; i < atoms; i++)
        {
            double rowSum = 0;
            for (int j = 0; j < atoms; j++)
            {
                double g = 0;
                for (int t = 0; t < patchSize; t++)
                {
                    g += _d[i * patchSize + t] * _d[j * patchSize + t];
                }

                _gram[i * atoms + j] = g;
                rowSum += Math.Abs(g);
            }

            lipschitz = Math.Max(lipschitz, rowSum);
        }

        _step = lipschitz > 0 ? 1.0 / lipschitz : 0;
        _dtx = new double[atoms];
        _y = new double[atoms];
        _previous = new double[atoms];
    }

    /// <summary>Writes the code of <paramref name="x"/> into <paramref name="code"/>; returns ½‖x − Dα‖² + λ‖α‖₁.</summary>
    public double Encode(ReadOnlySpan<float> x, Span<double> code)
    {
        int k = _k, p = _p;
        for (int i = 0; i < k; i++)
        {
            double v = 0;
            for (int t = 0; t < p; t++)
            {
                v += _d[i * p + t] * x[t];
            }

            _dtx[i] = v;
        }

        code.Clear();
        Array.Clear(_y);
        Array.Clear(_previous);
        double momentum = 1;
        for (int it = 0; it < _iterations && _step > 0; it++)
        {
            // α⁺ = soft(y − (G y − Dᵀx)/L, λ/L), then Nesterov's extrapolation.
            for (int i = 0; i < k; i++)
            {
                double gy = 0;
                for (int j = 0; j < k; j++)
                {
                    gy += _gram[i * k + j] * _y[j];
                }

                code[i] = SoftThreshold.Apply(_y[i] - _step * (gy - _dtx[i]), _step * _penalty);
            }

            double next = (1 + Math.Sqrt(1 + 4 * momentum * momentum)) / 2;
            double beta = (momentum - 1) / next;
            for (int i = 0; i < k; i++)
            {
                _y[i] = code[i] + beta * (code[i] - _previous[i]);
                _previous[i] = code[i];
            }

            momentum = next;
        }

        // ½‖x − Dα‖² + λ‖α‖₁ = ½‖x‖² − αᵀDᵀx + ½αᵀGα + λ‖α‖₁.
        double xx = 0;
        for (int t = 0; t < p; t++)
        {
            xx += (double)x[t] * x[t];
        }

        double value = 0.5 * xx, l1 = 0;
        for (int i = 0; i < k; i++)
        {
            if (code[i] == 0)
            {
                continue;
            }

            double ga = 0;
            for (int j = 0; j < k; j++)
            {
                ga += _gram[i * k + j] * code[j];
            }

            value += code[i] * (0.5 * ga - _dtx[i]);
            l1 += Math.Abs(code[i]);
        }

        return value + _penalty * l1;
    }
}

/// <summary>A device's patches (N × p, row-major) as the dictionary surrogate reads them: features only, no gradient.</summary>
public sealed class PatchObjective : IDeviceObjective
{
    private readonly float[] _patches;

    public PatchObjective(float[] patches, int patchSize)
    {
        ArgumentNullException.ThrowIfNull(patches);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(patchSize);
        if (patches.Length % patchSize != 0)
        {
            throw new ArgumentException($"{patches.Length} values are not whole patches of {patchSize}.", nameof(patches));
        }

        _patches = patches;
        FeatureSize = patchSize;
    }

    public int SampleCount => _patches.Length / FeatureSize;

    public int FeatureSize { get; }

    public ReadOnlySpan<float> Features => _patches;

    /// <summary>The dictionary surrogate needs no gradient (its statistic is built from the codes).</summary>
    public double Gradient(ReadOnlySpan<float> parameters, Span<float> gradient) =>
        throw new NotSupportedException("Dictionary learning's surrogate reads the patches, not a gradient.");
}
