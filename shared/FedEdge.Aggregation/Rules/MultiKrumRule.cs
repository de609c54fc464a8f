using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Multi-Krum (Blanchard et al., NeurIPS 2017; El Mhamdi et al., ICML 2018): the plain average of the m updates
/// with the lowest Krum scores (n − f − 2 neighbours). m = 1 is Krum; m = n − f is ByzFL's default. Needs
/// n ≥ 2f + 3 and 1 ≤ m ≤ n.
/// <example>
/// n = 5, f = 1, m = 2, 1-D updates 0, 1, 2, 3, 100: the two lowest scores are updates 1 and 2, A = 1.5.
/// </example>
/// </summary>
public sealed class MultiKrumRule : AggregationRule
{
    public MultiKrumRule(int f, int m)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(m);
        F = f;
        M = m;
    }

    public int F { get; }

    /// <summary>How many lowest-scoring updates are averaged.</summary>
    public int M { get; }

    public override string Name => "multi-krum";

    protected override void CheckCount(int count)
    {
        KrumScores.RequireEnoughUpdates(Name, count, F);
        if (M > count)
        {
            throw new ArgumentException($"{Name} averages m = {M} updates but only n = {count} were given.");
        }
    }

    protected override void AggregateCore(UpdateBatch updates, Span<float> result)
    {
        var selected = KrumScores.Lowest(KrumScores.Compute(updates, F), M);
        var coefficients = new double[updates.Count];
        foreach (int i in selected)
        {
            coefficients[i] = 1.0 / M;
        }

        RowCombination.Combine(updates, coefficients, result);
    }
}
