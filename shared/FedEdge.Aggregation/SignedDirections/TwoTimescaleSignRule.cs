using System.Globalization;
using System.Numerics.Tensors;

namespace FedEdge.Aggregation.SignedDirections;

/// <summary>
/// FAR-SIGN's step sizes (algorithms.md §4 [design]): α_k = α₀/(k + k₀)^a (slow, the model) and β_k = β₀/(k + k₀)^b
/// (fast, the direction estimate), k the answers applied so far (0 for the first). a &gt; b makes α_k/β_k → 0, the
/// two-timescale condition; β₀/k₀^b ≤ 1 keeps y a convex combination.
/// </summary>
public sealed record SignSchedule(double Alpha0, double Beta0, double A, double B, double K0)
{
    public double Alpha(long k) => Alpha0 / Math.Pow(k + K0, A);

    public double Beta(long k) => Beta0 / Math.Pow(k + K0, B);

    /// <summary>The first problem with the schedule, or null.</summary>
    public string? Validate()
    {
        if (!(Alpha0 > 0) || !double.IsFinite(Alpha0))
        {
            return $"alpha must be positive (got {Alpha0})";
        }

        if (!(Beta0 > 0) || !double.IsFinite(Beta0))
        {
            return $"beta must be positive (got {Beta0})";
        }

        if (!(K0 >= 1) || !double.IsFinite(K0))
        {
            return $"k0 must be at least 1 (got {K0})";
        }

        if (!(B > 0 && B <= 1))
        {
            return $"b must lie in (0, 1] (got {B})";
        }

        if (!(A > B) || !double.IsFinite(A))
        {
            return $"a must exceed b so that α_k/β_k → 0 (got a = {A}, b = {B})";
        }

        return Beta(0) > 1 ? $"β_0 = beta/k0^b = {Beta(0).ToString("G4", CultureInfo.InvariantCulture)} exceeds 1; lower beta or raise k0" : null;
    }
}

/// <summary>
/// FAR-SIGN's server rule (algorithms.md §4 [design], FedEdge's realisation of arXiv 2605.09337, whose exact equations
/// were not available): for every answer b_k on direction u_k, in order, the fast timescale
/// y ← y + β_k(b_k·u_k − y) and the slow one x ← x − α_k·y, k counting answers applied.
/// <para>
/// A message's K answers are applied in closed form, exactly the K sequential steps: with R_i = Π_{m&gt;i}(1 − β_m),
/// S_K = α_K, S_i = α_i + (1 − β_{i+1})S_{i+1} and P_j = Π_{m≤j}(1 − β_m),
/// y_K = P_K·y_0 + Σ_i β_i R_i b_i u_i and x_K = x_0 − (Σ_j α_j P_j)·y_0 − Σ_i β_i S_i b_i u_i.
/// So each answer costs one pass over its signs into two accumulators, and nothing is allocated per answer.
/// </para>
/// <para>
/// Influence bound: y starts at 0 and stays a convex combination of 0 and unit vectors ±u, so ‖y‖ ≤ 1, every answer
/// moves y by β_k‖b_k u_k − y‖ ≤ 2β_k whatever its sender, and x by α_k‖y‖ ≤ α_k. An adversary that sends a share ρ of
/// the answers shifts y from the honest estimate by at most 2ρ in norm (less once its answers must be signs along
/// directions it does not choose), whatever the magnitudes a malicious dense update could have had.
/// </para>
/// <example>d = 1 (u = ±1), α₀ = β₀ = 1, a = 1, b = 0.5, k₀ = 4 (α = 1/4, 1/5; β = 1/2, 1/√5): answers +1, +1 from
/// x = 0, y = 0 give y = 0.5 then 0.5 + (1 − 0.5)/√5 ≈ 0.72361, x = −0.125 then −0.125 − 0.72361/5 ≈ −0.26972.</example>
/// </summary>
public sealed class TwoTimescaleSignRule
{
    private readonly ulong[] _words;
    private readonly float[] _moveX;
    private readonly float[] _moveY;
    private readonly double[] _alpha;
    private readonly double[] _beta;
    private readonly double[] _coefficientX;
    private readonly double[] _coefficientY;

    public TwoTimescaleSignRule(int dimension, SignSchedule schedule, int maxAnswers)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxAnswers);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxAnswers, SignAnswerPacket.MaxAnswers);
        if (schedule.Validate() is { } problem)
        {
            throw new ArgumentException(problem, nameof(schedule));
        }

        Dimension = dimension;
        Schedule = schedule;
        MaxAnswers = maxAnswers;
        _words = new ulong[RademacherDirections.WordCount(dimension)];
        _moveX = new float[dimension];
        _moveY = new float[dimension];
        _alpha = new double[maxAnswers];
        _beta = new double[maxAnswers];
        _coefficientX = new double[maxAnswers];
        _coefficientY = new double[maxAnswers];
    }

    public int Dimension { get; }

    public SignSchedule Schedule { get; }

    public int MaxAnswers { get; }

    /// <summary>
    /// Applies a validated packet's answers on the directions of <paramref name="deviceKey"/> (indices 0 … K − 1) to
    /// the model <paramref name="x"/> and the estimate <paramref name="y"/>, answers numbered from
    /// <paramref name="answersApplied"/> on; returns the new count.
    /// </summary>
    public long Apply(Span<float> x, Span<float> y, long answersApplied, ulong deviceKey, ReadOnlySpan<byte> packet)
    {
        if (x.Length != Dimension || y.Length != Dimension)
        {
            throw new ArgumentException($"x has {x.Length} and y {y.Length} coordinates; the rule has {Dimension}.");
        }

        if (SignAnswerPacket.Validate(packet, MaxAnswers) is { } problem)
        {
            throw new ArgumentException(problem, nameof(packet));
        }

        int count = SignAnswerPacket.Count(packet);
        for (int i = 0; i < count; i++)
        {
            _alpha[i] = Schedule.Alpha(answersApplied + i);
            _beta[i] = Schedule.Beta(answersApplied + i);
        }

        // Backward: R_i and S_i (see the class comment), 0-based.
        double r = 1.0;
        double s = 0.0;
        for (int i = count - 1; i >= 0; i--)
        {
            s = _alpha[i] + (i + 1 < count ? (1 - _beta[i + 1]) * s : 0.0);
            if (i + 1 < count)
            {
                r *= 1 - _beta[i + 1];
            }

            _coefficientY[i] = _beta[i] * r;
            _coefficientX[i] = _beta[i] * s;
        }

        // Forward: P_K and Σ α_j P_j, the old y's share of both updates.
        double p = 1.0;
        double alphaP = 0.0;
        for (int j = 0; j < count; j++)
        {
            p *= 1 - _beta[j];
            alphaP += _alpha[j] * p;
        }

        Array.Clear(_moveX);
        Array.Clear(_moveY);
        for (int i = 0; i < count; i++)
        {
            RademacherDirections.Generate(deviceKey, i, _words);
            int sign = SignAnswerPacket.Sign(packet, i);
            RademacherDirections.MultiplyAdd(_words, (float)(sign * _coefficientX[i]), _moveX, (float)(sign * _coefficientY[i]), _moveY);
        }

        // x ← x − Σα_j P_j·y_0 − moveX, then y ← P_K·y_0 + moveY (x first: it reads the old y).
        TensorPrimitives.MultiplyAdd(y, (float)-alphaP, x, x);
        TensorPrimitives.Subtract(x, _moveX, x);
        TensorPrimitives.MultiplyAdd(y, (float)p, _moveY, y);
        return answersApplied + count;
    }
}
