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

    /// <summary>Copies the optimizer's vectors (m, v) into <paramref name="state"/> under <paramref name="prefix"/>, marked changed.</summary>
    void SaveTo(Strategies.ServerState state, string prefix);

    /// <summary>Takes the vectors saved by <see cref="SaveTo"/> back (on activation); absent ones start fresh.</summary>
    void LoadFrom(Strategies.ServerState state, string prefix, int length);
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

    public void SaveTo(Strategies.ServerState state, string prefix)
    {
        ArgumentNullException.ThrowIfNull(state);
        foreach (var (name, vector) in Vectors)
        {
            string key = prefix + name;
            vector.CopyTo(state.GetOrCreate(key, vector.Length), 0);
            state.MarkChanged(key);
        }
    }

    public void LoadFrom(Strategies.ServerState state, string prefix, int length)
    {
        ArgumentNullException.ThrowIfNull(state);
        InitializeState(length);
        foreach (var (name, vector) in Vectors)
        {
            if (state.TryGet(prefix + name, out var saved) && saved.Length == length)
            {
                saved.CopyTo(vector, 0);
            }
        }
    }

    /// <summary>The optimizer's state vectors by name (empty before the first step).</summary>
    protected abstract IReadOnlyList<(string Name, float[] Vector)> Vectors { get; }

    protected abstract int StateLength { get; }

    protected abstract void InitializeState(int length);

    protected abstract void Step(Span<float> model, ReadOnlySpan<float> aggregate);
}
