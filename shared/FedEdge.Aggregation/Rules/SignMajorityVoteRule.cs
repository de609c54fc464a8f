namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Majority vote of signs over float updates (Bernstein et al., ICLR 2019): A[j] = sign(Σ_i sign(Δ_i[j])) with
/// sign(x) = −1 for x &lt; 0 and +1 otherwise (the packed layout's convention), 0 on a tie. Weights are ignored:
/// one device, one vote. Robust while the Byzantine devices are fewer than the honest margin and do not collude.
/// The packed-bit path is <see cref="SignMajorityVoteAccumulator.AddPacked"/>.
/// <example>
/// Rows [1, −2, 0], [−1, −3, 5], [4, −1, −2]: negative counts [1, 3, 1] of 3, vote [+1, −1, +1].
/// </example>
/// </summary>
public sealed class SignMajorityVoteRule : AggregationRule, IStreamingRule
{
    public override string Name => "sign-vote";

    public IStreamingAggregator CreateAccumulator(int dimension) => new SignMajorityVoteAccumulator(dimension);

    protected override void AggregateCore(UpdateBatch updates, Span<float> result)
    {
        var vote = new SignMajorityVoteAccumulator(updates.Dimension, updates.Count);
        for (int i = 0; i < updates.Count; i++)
        {
            vote.Add(updates.Row(i));
        }

        vote.Complete(result);
    }
}
