namespace FedEdge.Aggregation.PreAggregation;

/// <summary>
/// A transformation of the batch applied before a robust rule (ByzFL's "pre-aggregators"): it returns a new batch,
/// often with fewer or mixed rows, that the rule then aggregates.
/// </summary>
public interface IPreAggregator
{
    string Name { get; }

    UpdateBatch Apply(UpdateBatch updates);
}

/// <summary>A robust rule preceded by a pre-aggregator, itself a rule (e.g. bucketing + Krum).</summary>
public sealed class PreAggregatedRule : AggregationRule
{
    public PreAggregatedRule(IPreAggregator preAggregator, IAggregationRule rule)
    {
        PreAggregator = preAggregator ?? throw new ArgumentNullException(nameof(preAggregator));
        Rule = rule ?? throw new ArgumentNullException(nameof(rule));
    }

    public IPreAggregator PreAggregator { get; }

    public IAggregationRule Rule { get; }

    public override string Name => $"{PreAggregator.Name}+{Rule.Name}";

    protected override void AggregateCore(UpdateBatch updates, Span<float> result) =>
        Rule.Aggregate(PreAggregator.Apply(updates), result);
}
