namespace FedEdge.Aggregation.SignedDirections;

/// <summary>A device's mean loss f_i at <paramref name="parameters"/> (OnnxTrainer.EvaluateLoss over a minibatch).</summary>
public delegate double LossOracle(ReadOnlySpan<float> parameters);

/// <summary>
/// The device side of FAR-SIGN (algorithms.md §4 [design], after arXiv 2605.09337): for the model x̃ of a published
/// version and that version's work seed, answer K directions u_0 … u_{K−1} (<see cref="RademacherDirections"/>, keyed
/// by the device's id) with one bit each:
/// first order b_k = sign(⟨∇f_i(x̃), u_k⟩) from one minibatch gradient (OnnxTrainer.ComputeGradient);
/// zeroth order b_k = sign(f_i(x̃ + c·u_k) − f_i(x̃ − c·u_k)) from two loss evaluations per direction (any ONNX model,
/// no gradient engine needed). A tie (exactly 0) answers +1. Buffers are sized once: nothing is allocated per direction.
/// Not thread-safe.
/// </summary>
public sealed class SignAnswerer
{
    private readonly ulong[] _words;
    private readonly float[] _point;

    public SignAnswerer(int dimension)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        Dimension = dimension;
        _words = new ulong[RademacherDirections.WordCount(dimension)];
        _point = new float[dimension];
    }

    /// <summary>d, the model's parameter count.</summary>
    public int Dimension { get; }

    /// <summary>First order: writes the packet of <paramref name="count"/> answers from ∇f_i(x̃); returns its length.</summary>
    public int AnswerFirstOrder(ulong workSeed, string deviceId, ReadOnlySpan<float> gradient, int count, Span<byte> packet)
    {
        CheckLength(gradient, nameof(gradient));
        SignAnswerPacket.Start(packet, count);
        ulong key = RademacherDirections.DeviceKey(workSeed, deviceId);
        for (int k = 0; k < count; k++)
        {
            RademacherDirections.Generate(key, k, _words);
            SignAnswerPacket.Set(packet, k, RademacherDirections.Dot(_words, gradient) >= 0);
        }

        return SignAnswerPacket.Length(count);
    }

    /// <summary>Zeroth order: writes the packet of <paramref name="count"/> answers from the symmetric difference of
    /// the loss at x̃ ± c·u_k (c = <paramref name="smoothing"/>); returns its length.</summary>
    public int AnswerZerothOrder(ulong workSeed, string deviceId, ReadOnlySpan<float> parameters, float smoothing, LossOracle loss, int count, Span<byte> packet)
    {
        ArgumentNullException.ThrowIfNull(loss);
        CheckLength(parameters, nameof(parameters));
        if (!(smoothing > 0) || !float.IsFinite(smoothing))
        {
            throw new ArgumentOutOfRangeException(nameof(smoothing), smoothing, "The smoothing c must be positive and finite.");
        }

        SignAnswerPacket.Start(packet, count);
        ulong key = RademacherDirections.DeviceKey(workSeed, deviceId);
        for (int k = 0; k < count; k++)
        {
            RademacherDirections.Generate(key, k, _words);
            // Each side starts again from x̃, so rounding does not drift the point over many directions.
            parameters.CopyTo(_point);
            RademacherDirections.MultiplyAdd(_words, smoothing, _point);
            double plus = loss(_point);
            parameters.CopyTo(_point);
            RademacherDirections.MultiplyAdd(_words, -smoothing, _point);
            double minus = loss(_point);
            SignAnswerPacket.Set(packet, k, plus - minus >= 0);
        }

        return SignAnswerPacket.Length(count);
    }

    private void CheckLength(ReadOnlySpan<float> vector, string name)
    {
        if (vector.Length != Dimension)
        {
            throw new ArgumentException($"The vector has {vector.Length} coordinates; the model has {Dimension}.", name);
        }
    }
}
