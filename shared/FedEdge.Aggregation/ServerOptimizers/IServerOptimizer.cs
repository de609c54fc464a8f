namespace FedEdge.Aggregation.ServerOptimizers;

/// <summary>
/// Server-side optimizer applied to the aggregate of any rule (FedOpt: Reddi et al., "Adaptive Federated
/// Optimization", ICLR 2021, Algorithm 2). The aggregate Δ is the mean device update x_i − x, i.e. a descent
/// direction (minus the pseudo-gradient), so every optimizer moves the model along +Δ.
/// </summary>
public interface IServerOptimizer
{
    string Name { get; }

    /// <summary>model ← model + step(Δ); updates the optimizer's state (momentum, second moments).</summary>
    void Apply(Span<float> model, ReadOnlySpan<float> aggregate);

    /// <summary>Forgets the state (new model or new federation).</summary>
    void Reset();
}

/// <summary>Shared shape checks and lazily sized state for the FedOpt family.</summary>
public abstract class ServerOptimizer : IServerOptimizer
{
    public abstract string Name { get; }

    public void Apply(Span<float> model, ReadOnlySpan<float> aggregate)
    {
        if (model.Length != aggregate.Length)
        {
            throw new ArgumentException(
                $"{Name}: the model has {model.Length} parameters but the aggregate {aggregate.Length}.", nameof(aggregate));
        }

        int bad = UpdateValidator.IndexOfNonFinite(aggregate);
        if (bad >= 0)
        {
            throw new InvalidUpdateException(null, $"{Name}: the aggregate's {UpdateValidator.DescribeNonFinite(aggregate, bad)}");
        }

        if (StateLength != model.Length)
        {
            InitializeState(model.Length);
        }

        Step(model, aggregate);
    }

    public void Reset() => InitializeState(0);

    protected abstract int StateLength { get; }

    protected abstract void InitializeState(int length);

    protected abstract void Step(Span<float> model, ReadOnlySpan<float> aggregate);
}
