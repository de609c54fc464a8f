using FedEdge.Aggregation.Rules;

namespace FedEdge.Aggregation.Asynchronous;

/// <summary>
/// FedBuff's server buffer (Nguyen et al., AISTATS 2022): Δ̄ += Δ·s(τ) with s(τ) = 1/√(1 + τ); after K updates
/// x ← x + η_g·Δ̄/K and the model version advances. Updates staler than <see cref="MaxStaleness"/> are dropped
/// (NVFlare's edge example uses 100). Streaming, O(d), no allocation per update.
/// <example>K = 2, η_g = 1: Δ = [2] at τ = 0 and Δ = [4] at τ = 3 give Δ̄ = 2 + 4/2 = 4, x += 4/2 = 2.</example>
/// </summary>
public sealed class FedBuffBuffer
{
    private readonly WeightedMeanAccumulator _buffer;
    private readonly IStalenessWeighting _staleness;

    public FedBuffBuffer(int dimension, int bufferSize, double serverLearningRate = 1.0, int maxStaleness = 100,
        IStalenessWeighting? staleness = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferSize);
        ArgumentOutOfRangeException.ThrowIfNegative(maxStaleness);
        _buffer = new WeightedMeanAccumulator(dimension, MeanNormalization.Count);
        _staleness = staleness ?? new FedBuffStaleness();
        BufferSize = bufferSize;
        ServerLearningRate = serverLearningRate;
        MaxStaleness = maxStaleness;
    }

    /// <summary>K, updates per model version.</summary>
    public int BufferSize { get; }

    public double ServerLearningRate { get; }

    public int MaxStaleness { get; }

    public int Count => _buffer.Count;

    public bool IsFull => _buffer.Count >= BufferSize;

    /// <summary>Buffers one update; false (not buffered) when it is too stale. Throws for a non-finite update.</summary>
    public bool TryAdd(ReadOnlySpan<float> update, int staleness)
    {
        if (!CanAdd(staleness))
        {
            return false;
        }

        _buffer.Add(update, (float)_staleness.Weight(staleness));
        return true;
    }

    /// <summary>Buffers one update in its compressed form (see <see cref="IAccumulableUpdate"/>); same rules as the dense one.</summary>
    public bool TryAdd(IAccumulableUpdate update, int staleness)
    {
        if (!CanAdd(staleness))
        {
            return false;
        }

        _buffer.Add(update, (float)_staleness.Weight(staleness));
        return true;
    }

    private bool CanAdd(int staleness)
    {
        if (staleness > MaxStaleness)
        {
            return false;
        }

        if (IsFull)
        {
            throw new InvalidOperationException("The buffer is full; apply it before adding more updates.");
        }

        return true;
    }

    /// <summary>x ← x + η_g·Δ̄/K, then empties the buffer.</summary>
    public void ApplyTo(Span<float> model, Span<float> scratch)
    {
        _buffer.Complete(scratch);
        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(scratch, (float)ServerLearningRate, model, model);
        _buffer.Reset();
    }
}

/// <summary>
/// FedAsync's mixing step (Xie et al., 2019): x ← (1 − α_t)·x + α_t·x_new with α_t = α·s(τ).
/// <example>α = 0.5, constant s, x = [0], x_new = [2]: x = [1].</example>
/// </summary>
public sealed class FedAsyncMixer(double alpha, IStalenessWeighting staleness)
{
    public double Alpha { get; } = alpha is > 0 and <= 1 ? alpha : throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must lie in (0, 1].");

    public IStalenessWeighting Staleness { get; } = staleness ?? throw new ArgumentNullException(nameof(staleness));

    public void Mix(Span<float> model, ReadOnlySpan<float> deviceModel, int staleness)
    {
        if (model.Length != deviceModel.Length)
        {
            throw new ArgumentException($"The device model has {deviceModel.Length} parameters, expected {model.Length}.", nameof(deviceModel));
        }

        int bad = UpdateValidator.IndexOfNonFinite(deviceModel);
        if (bad >= 0)
        {
            throw new InvalidUpdateException(null, UpdateValidator.DescribeNonFinite(deviceModel, bad));
        }

        float a = (float)(Alpha * Staleness.Weight(staleness));
        System.Numerics.Tensors.TensorPrimitives.Lerp(model, deviceModel, a, model);
    }
}
