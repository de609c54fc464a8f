using System.Buffers.Binary;
using System.Numerics.Tensors;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// A device's side of FedMM (arXiv 2507.17534, in the form of FedEM, Dieuleveut et al. 2021; algorithms.md §5): its
/// control variate V_i and the two rules around the codec. Per version the device computes S_i (<see cref="ISurrogate.Statistic"/>),
/// <see cref="Difference"/> writes Δ_i = S_i − Ŝ − V_i, the caller encodes Q(Δ_i) with the federation's codec, sends it,
/// decodes it back and calls <see cref="Apply"/>: V_i ← V_i + α·Q(Δ_i) (the device must add what the server adds, so
/// it uses the decoded Q(Δ_i), never Δ_i).
/// <para>Bootstrap (no Ŝ published yet, statistics_count = 0): Ŝ = 0 and V_i = 0, so Δ_i = S_i; the server sets
/// Ŝ₀ = mean S_i(θ₀) and V = 0, and the device must not call <see cref="Apply"/> for that answer
/// (see <see cref="FedMMServerRule"/>). That answer should travel exactly (fp32), whatever the federation's codec: it is
/// S_i itself, which no control variate corrects later. With V_i = 0 after the bootstrap, Δ_i keeps the device's
/// heterogeneity S_i − Ŝ in full until V_i has learnt it at rate α, which a top-k codec spends its budget on
/// (bench/results/2026-12-07-fedmm/, top-10 %); FedEM's V_i = S_i(θ₀) − Ŝ₀ is the remedy not built yet.</para>
/// <example>α = 0.5, V_i = [0], Ŝ = [1], S_i = [4]: Δ_i = [3]; with Q exact, V_i = [1.5]; next S_i = [4], Ŝ = [2.5]:
/// Δ_i = [0].</example>
/// </summary>
public sealed class FedMMControlVariate
{
    private const uint Magic = 0x56434D46; // "FMCV"
    private const byte FormatVersion = 1;
    private const int HeaderSize = 4 + 1 + 4 + 8;

    public FedMMControlVariate(int statisticLength, double alpha)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(statisticLength);
        Alpha = alpha is > 0 and <= 1 ? alpha : throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must lie in (0, 1].");
        Values = new float[statisticLength];
    }

    /// <summary>α, the control variate's step (≤ 1/(1 + ω)).</summary>
    public double Alpha { get; }

    /// <summary>V_i (m values).</summary>
    public float[] Values { get; }

    /// <summary>Δ_i = S_i − Ŝ − V_i; an empty <paramref name="statisticEstimate"/> is the bootstrap (Δ_i = S_i).</summary>
    public void Difference(ReadOnlySpan<float> statistic, ReadOnlySpan<float> statisticEstimate, Span<float> difference)
    {
        Check(statistic.Length, nameof(statistic));
        Check(difference.Length, nameof(difference));
        if (statisticEstimate.IsEmpty)
        {
            statistic.CopyTo(difference);
            return;
        }

        Check(statisticEstimate.Length, nameof(statisticEstimate));
        TensorPrimitives.Subtract(statistic, statisticEstimate, difference);
        TensorPrimitives.Subtract(difference, Values, difference);
    }

    /// <summary>V_i ← V_i + α·Q(Δ_i), with the decoded Q(Δ_i) the server received. Not for the bootstrap answer.</summary>
    public void Apply(ReadOnlySpan<float> decodedDifference)
    {
        Check(decodedDifference.Length, nameof(decodedDifference));
        TensorPrimitives.MultiplyAdd(decodedDifference, (float)Alpha, Values, Values);
    }

    /// <summary>Persistable form: "FMCV", format version, m (int32 LE), α (float64 LE), V_i (float32 LE).</summary>
    public byte[] ToBytes()
    {
        var bytes = new byte[HeaderSize + 4L * Values.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Magic);
        bytes[4] = FormatVersion;
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(5), Values.Length);
        BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(9), Alpha);
        for (int i = 0; i < Values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(HeaderSize + 4 * i), Values[i]);
        }

        return bytes;
    }

    /// <summary>Reads <see cref="ToBytes"/>'s form; throws <see cref="InvalidDataException"/> naming what is wrong
    /// (another format, another length than <paramref name="statisticLength"/>, a non-finite value).</summary>
    public static FedMMControlVariate FromBytes(ReadOnlySpan<byte> bytes, int statisticLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(statisticLength);
        if (bytes.Length < HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic || bytes[4] != FormatVersion)
        {
            throw new InvalidDataException("The FedMM control variate is not in format FMCV v1.");
        }

        int length = BinaryPrimitives.ReadInt32LittleEndian(bytes[5..]);
        if (length != statisticLength || bytes.Length != HeaderSize + 4L * length)
        {
            throw new InvalidDataException($"The FedMM control variate holds {length} values in {bytes.Length} bytes; {statisticLength} values expected.");
        }

        double alpha = BinaryPrimitives.ReadDoubleLittleEndian(bytes[9..]);
        if (!(alpha is > 0 and <= 1))
        {
            throw new InvalidDataException($"The FedMM control variate's α = {alpha} is outside (0, 1].");
        }

        var variate = new FedMMControlVariate(length, alpha);
        for (int i = 0; i < length; i++)
        {
            float v = BinaryPrimitives.ReadSingleLittleEndian(bytes[(HeaderSize + 4 * i)..]);
            variate.Values[i] = float.IsFinite(v) ? v : throw new InvalidDataException($"The FedMM control variate's value {i} is not finite.");
        }

        return variate;
    }

    private void Check(int length, string name)
    {
        if (length != Values.Length)
        {
            throw new ArgumentException($"{name} has {length} values; the statistic has {Values.Length}.", name);
        }
    }
}

/// <summary>
/// The server's side of FedMM (arXiv 2507.17534, in the form of FedEM, Dieuleveut et al. 2021; algorithms.md §5), on
/// the sum Σ_active π_i·Q(Δ_i) of one version (π_i the device's weight, 1/n in the paper):
/// H = V + (1/q)·Σ_active π_i Q(Δ_i); Ŝ ← Ŝ + γ·H; V ← V + α·Σ_active π_i Q(Δ_i); then θ = T(Ŝ). q is the probability
/// that a device is active (p in the paper), so H is an unbiased estimate of Σ_i π_i (S_i − Ŝ) when V = Σ π_i V_i.
/// <example>q = 0.5, α = 0.5, γ = 1, Ŝ = [1], V = [0], n = 2 with π = ½, one active device with Q(Δ) = [2]:
/// sum = [1], H = [2], Ŝ = [3], V = [0.5].</example>
/// <para>Bootstrap [paper: Ŝ₀ is any point of the statistics' set; FedEdge's choice, documented]: Ŝ₀ = the π-weighted
/// mean of the S_i(θ₀) of a first version that asks every available device, V = V_i = 0, so T(Ŝ₀) is the full-batch
/// MM step from θ₀ and the surrogate's curvature part (h, A) is never 0.</para>
/// </summary>
public static class FedMMServerRule
{
    /// <summary>One version's update of Ŝ and V from <paramref name="weightedSum"/> = Σ_active π_i Q(Δ_i).</summary>
    public static void Apply(Span<float> statisticEstimate, Span<float> controlVariate, ReadOnlySpan<float> weightedSum,
        double participation, double alpha, double gamma)
    {
        if (statisticEstimate.Length != weightedSum.Length || controlVariate.Length != weightedSum.Length)
        {
            throw new ArgumentException($"Ŝ has {statisticEstimate.Length}, V {controlVariate.Length} and the sum {weightedSum.Length} values; they must agree.");
        }

        if (!(participation is > 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(participation), participation, "q must lie in (0, 1].");
        }

        float inverse = (float)(1.0 / participation);
        for (int i = 0; i < weightedSum.Length; i++)
        {
            float h = controlVariate[i] + inverse * weightedSum[i];
            statisticEstimate[i] += (float)gamma * h;
            controlVariate[i] += (float)alpha * weightedSum[i];
        }
    }
}
