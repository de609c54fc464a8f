using System.Buffers;
using System.Numerics.Tensors;

namespace FedEdge.Compression.ErrorFeedback;

public enum ErrorFeedbackKind : byte
{
    /// <summary>Plain compression, no memory (biased for sign/top-k; kept for comparison).</summary>
    None = 0,
    Ef14 = 1,
    Ef21 = 2,
    EControl = 3,
}

/// <summary>
/// Device-side compression with error feedback (algorithms.md §1). One instance per device and model
/// shape. Each <see cref="Compress"/> call turns the local model delta Δ into the message to send and
/// updates the device state. The compressor C is "encode, then decode what was encoded", so the state
/// tracks exactly what the server receives (fp16 rounding, sign scales). Not thread-safe; the state
/// is persisted with <see cref="ErrorFeedbackState"/>.
/// </summary>
public abstract class ErrorFeedbackCompressor
{
    private readonly float[] _input;
    private readonly float[] _sent;

    private protected ErrorFeedbackCompressor(IUpdateCodec codec, int dimension)
    {
        ArgumentNullException.ThrowIfNull(codec);
        ArgumentOutOfRangeException.ThrowIfNegative(dimension);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(dimension, PayloadHeader.MaxDimension);
        Codec = codec;
        Dimension = dimension;
        _input = new float[dimension];
        _sent = new float[dimension];
    }

    public IUpdateCodec Codec { get; }

    public int Dimension { get; }

    /// <summary>Number of messages produced since the state was created.</summary>
    public long Rounds { get; private protected set; }

    public abstract ErrorFeedbackKind Kind { get; }

    /// <summary>Name used in <c>UpdateEnvelope.error_feedback</c>: none, ef14, ef21, econtrol.</summary>
    public string Name => NameOf(Kind);

    /// <summary>EControl's η (0 for the other schemes).</summary>
    public virtual float Eta => 0f;

    /// <summary>The decoded form of the last message (what the server adds).</summary>
    public ReadOnlySpan<float> LastSent => _sent;

    /// <summary>The persistent state vectors in their serialized order.</summary>
    public abstract IReadOnlyList<float[]> StateVectors { get; }

    /// <summary>Compresses Δ, writes the codec payload to <paramref name="output"/>, updates the state; returns bytes written.</summary>
    /// <exception cref="ArgumentException">Δ has the wrong length or holds NaN/∞ (the state is left unchanged).</exception>
    public int Compress(ReadOnlySpan<float> delta, IBufferWriter<byte> output)
    {
        if (delta.Length != Dimension)
        {
            throw new ArgumentException($"The update has {delta.Length} coordinates; this {Name} state has {Dimension}.", nameof(delta));
        }
        FloatKernels.EnsureFinite(delta, nameof(delta));
        PrepareInput(delta, _input);
        Span<byte> destination = output.GetSpan(Codec.MaxEncodedSize(Dimension));
        int written = Codec.Encode(_input, destination);
        PayloadCheck check = Codec.Decode(destination[..written], _sent);
        if (!check.IsValid)
        {
            throw new InvalidOperationException($"{Codec.Spec} could not decode its own payload: {check}");
        }
        UpdateState(delta, _input, _sent);
        output.Advance(written);
        Rounds++;
        return written;
    }

    /// <summary>Convenience overload returning a new array.</summary>
    public byte[] Compress(ReadOnlySpan<float> delta)
    {
        var writer = new ArrayBufferWriter<byte>(Codec.MaxEncodedSize(Dimension));
        Compress(delta, writer);
        return writer.WrittenSpan.ToArray();
    }

    /// <summary>The vector v handed to C this round.</summary>
    private protected abstract void PrepareInput(ReadOnlySpan<float> delta, Span<float> input);

    /// <summary>State update once the decoded message c = C(v) is known.</summary>
    private protected abstract void UpdateState(ReadOnlySpan<float> delta, ReadOnlySpan<float> input, ReadOnlySpan<float> sent);

    public static string NameOf(ErrorFeedbackKind kind) => kind switch
    {
        ErrorFeedbackKind.None => "none",
        ErrorFeedbackKind.Ef14 => "ef14",
        ErrorFeedbackKind.Ef21 => "ef21",
        ErrorFeedbackKind.EControl => "econtrol",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown error-feedback kind."),
    };

    /// <summary>Parses "none" | "ef14" | "ef21" | "econtrol" (case-insensitive).</summary>
    public static ErrorFeedbackKind ParseKind(string name) => name.Trim().ToLowerInvariant() switch
    {
        "none" => ErrorFeedbackKind.None,
        "ef14" or "ef" => ErrorFeedbackKind.Ef14,
        "ef21" => ErrorFeedbackKind.Ef21,
        "econtrol" => ErrorFeedbackKind.EControl,
        _ => throw new FormatException($"Unknown error-feedback scheme '{name}'; known: none, ef14, ef21, econtrol."),
    };

    /// <summary>A fresh (zero) state of the given kind.</summary>
    public static ErrorFeedbackCompressor Create(ErrorFeedbackKind kind, IUpdateCodec codec, int dimension, float eta = 0f) => kind switch
    {
        ErrorFeedbackKind.None => new NoErrorFeedback(codec, dimension),
        ErrorFeedbackKind.Ef14 => new Ef14Compressor(codec, dimension),
        ErrorFeedbackKind.Ef21 => new Ef21Compressor(codec, dimension),
        ErrorFeedbackKind.EControl => new EControlCompressor(codec, dimension, eta),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown error-feedback kind."),
    };

    private protected static float[] StateVector(float[]? restored, int dimension, string name)
    {
        if (restored is null)
        {
            return new float[dimension];
        }
        if (restored.Length != dimension)
        {
            throw new ArgumentException($"Restored {name} has {restored.Length} coordinates, not {dimension}.", name);
        }
        return restored;
    }
}

/// <summary>Compression without memory: sends C(Δ).</summary>
public sealed class NoErrorFeedback : ErrorFeedbackCompressor
{
    public NoErrorFeedback(IUpdateCodec codec, int dimension, long rounds = 0)
        : base(codec, dimension) => Rounds = rounds;

    public override ErrorFeedbackKind Kind => ErrorFeedbackKind.None;

    public override IReadOnlyList<float[]> StateVectors => [];

    private protected override void PrepareInput(ReadOnlySpan<float> delta, Span<float> input) => delta.CopyTo(input);

    private protected override void UpdateState(ReadOnlySpan<float> delta, ReadOnlySpan<float> input, ReadOnlySpan<float> sent)
    {
    }
}

/// <summary>
/// Classic error feedback, EF14 (Seide, Fu, Droppo, Li, Yu 2014, "1-bit stochastic gradient descent and its
/// application to data-parallel distributed training of speech DNNs"; analysed by Karimireddy et al. 2019,
/// "Error Feedback Fixes SignSGD"): e ← e + Δ; c = C(e); e ← e − c; send c. Invariant: Σ c + e = Σ Δ.
/// <example>C = sign with one block, Δ = (1, −3): e = (1, −3), c = 2·(+1, −1) = (2, −2), e ← (−1, −1).</example>
/// </summary>
public sealed class Ef14Compressor : ErrorFeedbackCompressor
{
    private readonly float[] _error;

    public Ef14Compressor(IUpdateCodec codec, int dimension, float[]? error = null, long rounds = 0)
        : base(codec, dimension)
    {
        _error = StateVector(error, dimension, nameof(error));
        Rounds = rounds;
    }

    public override ErrorFeedbackKind Kind => ErrorFeedbackKind.Ef14;

    /// <summary>The residual e (what has not been sent yet).</summary>
    public ReadOnlySpan<float> Error => _error;

    public override IReadOnlyList<float[]> StateVectors => [_error];

    private protected override void PrepareInput(ReadOnlySpan<float> delta, Span<float> input) => TensorPrimitives.Add(_error, delta, input);

    private protected override void UpdateState(ReadOnlySpan<float> delta, ReadOnlySpan<float> input, ReadOnlySpan<float> sent) =>
        TensorPrimitives.Subtract(input, sent, _error);
}

/// <summary>
/// EF21 (Richtárik, Sokolov, Fatkhullin 2021, "EF21: A New, Simpler, Theoretically Better, and Practically
/// Faster Error Feedback", NeurIPS): c = C(Δ − g_i); g_i ← g_i + c; send c. The server mirrors g = mean g_i
/// by adding the mean of the c it receives (<see cref="ErrorFeedbackServerState"/>). g_i starts at 0, so the
/// first message is C(Δ⁰) as in the paper's initialisation.
/// <example>C = sign, g = (0, 0), Δ = (1, −3): c = (2, −2), g = (2, −2); next Δ = (2, 0): Δ − g = (0, 2) →
/// c = (1, 1) (0 has a clear sign bit), g = (3, −1).</example>
/// </summary>
public sealed class Ef21Compressor : ErrorFeedbackCompressor
{
    private readonly float[] _g;

    public Ef21Compressor(IUpdateCodec codec, int dimension, float[]? g = null, long rounds = 0)
        : base(codec, dimension)
    {
        _g = StateVector(g, dimension, nameof(g));
        Rounds = rounds;
    }

    public override ErrorFeedbackKind Kind => ErrorFeedbackKind.Ef21;

    /// <summary>The device's estimate g_i of its own update.</summary>
    public ReadOnlySpan<float> G => _g;

    public override IReadOnlyList<float[]> StateVectors => [_g];

    private protected override void PrepareInput(ReadOnlySpan<float> delta, Span<float> input) => TensorPrimitives.Subtract(delta, _g, input);

    private protected override void UpdateState(ReadOnlySpan<float> delta, ReadOnlySpan<float> input, ReadOnlySpan<float> sent) =>
        TensorPrimitives.Add(_g, sent, _g);
}

/// <summary>
/// EControl (Gao, Islamov, Stich 2023, "EControl: Fast Distributed Optimization with Compression and Error
/// Control", arXiv 2311.05645): δ = C(η·e + Δ − h); e ← e + Δ − h − δ; h ← h + δ; send δ. The server keeps
/// h = mean h_i by adding the mean δ. η = 0 reduces to EF21 (with h in the role of g); theory suggests
/// η ≈ δ_C/400 for a δ_C-contractive C, in practice it is tuned.
/// <example>C = sign, η = 0.5, e = (1, 0), h = (0, 0), Δ = (1, −3): v = (1.5, −3) → δ = (2.25, −2.25);
/// e = (1, 0) + (1, −3) − (0, 0) − δ = (−0.25, −0.75); h = (2.25, −2.25).</example>
/// </summary>
public sealed class EControlCompressor : ErrorFeedbackCompressor
{
    private readonly float[] _e;
    private readonly float[] _h;
    private readonly float _eta;

    public EControlCompressor(IUpdateCodec codec, int dimension, float eta, float[]? e = null, float[]? h = null, long rounds = 0)
        : base(codec, dimension)
    {
        if (!(eta >= 0 && float.IsFinite(eta)))
        {
            throw new ArgumentOutOfRangeException(nameof(eta), eta, "EControl's η must be finite and non-negative.");
        }
        _eta = eta;
        _e = StateVector(e, dimension, nameof(e));
        _h = StateVector(h, dimension, nameof(h));
        Rounds = rounds;
    }

    public override ErrorFeedbackKind Kind => ErrorFeedbackKind.EControl;

    public override float Eta => _eta;

    public ReadOnlySpan<float> E => _e;

    public ReadOnlySpan<float> H => _h;

    public override IReadOnlyList<float[]> StateVectors => [_e, _h];

    private protected override void PrepareInput(ReadOnlySpan<float> delta, Span<float> input)
    {
        TensorPrimitives.MultiplyAdd(_e, _eta, delta, input); // η·e + Δ
        TensorPrimitives.Subtract(input, _h, input);
    }

    private protected override void UpdateState(ReadOnlySpan<float> delta, ReadOnlySpan<float> input, ReadOnlySpan<float> sent)
    {
        TensorPrimitives.Add(_e, delta, _e);
        TensorPrimitives.Subtract(_e, _h, _e);
        TensorPrimitives.Subtract(_e, sent, _e);
        TensorPrimitives.Add(_h, sent, _h);
    }
}

/// <summary>
/// Server mirror for EF21 / EControl: the running estimate g (or h) = mean over devices of g_i (h_i).
/// Each round the server adds the mean of the received messages; with partial participation pass
/// weight 1/n per received message so that g stays the mean over all n devices.
/// </summary>
public sealed class ErrorFeedbackServerState(int dimension)
{
    private readonly float[] _estimate = new float[dimension];

    public int Dimension => _estimate.Length;

    public ReadOnlySpan<float> Estimate => _estimate;

    /// <summary>g ← g + weight·message.</summary>
    public void Add(ReadOnlySpan<float> message, float weight)
    {
        if (message.Length != _estimate.Length)
        {
            throw new ArgumentException($"Message has {message.Length} coordinates, state has {_estimate.Length}.", nameof(message));
        }
        TensorPrimitives.MultiplyAdd(message, weight, _estimate, _estimate);
    }

    /// <summary>g ← g + mean message (full participation).</summary>
    public void AddMean(ReadOnlySpan<float> meanMessage) => Add(meanMessage, 1f);

    /// <summary>Replaces the estimate (e.g. restored from the aggregator's persisted state).</summary>
    public void Load(ReadOnlySpan<float> estimate)
    {
        if (estimate.Length != _estimate.Length)
        {
            throw new ArgumentException($"Estimate has {estimate.Length} coordinates, state has {_estimate.Length}.", nameof(estimate));
        }
        estimate.CopyTo(_estimate);
    }
}
