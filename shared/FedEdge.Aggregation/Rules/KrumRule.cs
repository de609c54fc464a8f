namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Krum (Blanchard et al., NeurIPS 2017): A = Δ_{i*}, i* = argmin_i score_i, score_i = Σ of squared distances to
/// the n − f − 2 nearest other updates (<see cref="KrumScores"/>). Needs n ≥ 2f + 3; tolerates f Byzantine updates.
/// <example>
/// n = 5, f = 1 (2 neighbours), 1-D updates 0, 1, 2, 3, 100: scores 1+4=5, 1+1=2, 1+1=2, 1+4=5, 97²+98²;
/// the lowest score with the lowest index is update 1, so A = 1.
/// </example>
/// </summary>
public sealed class KrumRule : AggregationRule
{
    public KrumRule(int f)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        F = f;
    }

    public int F { get; }

    public override string Name => "krum";

    protected override void CheckCount(int count) => KrumScores.RequireEnoughUpdates(Name, count, F);

    protected override void AggregateCore(UpdateBatch updates, Span<float> result)
    {
        int best = KrumScores.Lowest(KrumScores.Compute(updates, F), 1)[0];
        updates.Row(best).CopyTo(result);
    }
}
