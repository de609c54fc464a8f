using FedEdge.Aggregation.PreAggregation;
using FedEdge.Aggregation.ServerOptimizers;

namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// Synchronous rounds over dense updates with any rule (FedAvg with <see cref="Rules.WeightedMeanRule"/>, or a
/// robust rule, optionally behind a pre-aggregator), then a server optimizer (plain x ← x + Δ without one).
/// A rule that streams (<see cref="IStreamingRule"/>) aggregates updates as they arrive in O(d) memory; the
/// others keep the round's n×d block.
/// </summary>
public sealed class RobustAggregationStrategy(
    IAggregationRule rule,
    RoundOptions? options = null,
    IPreAggregator? preAggregator = null,
    IServerOptimizer? serverOptimizer = null) : FederatedStrategy(options ?? new RoundOptions())
{
    public IAggregationRule Rule { get; } = rule ?? throw new ArgumentNullException(nameof(rule));

    public IPreAggregator? PreAggregator { get; } = preAggregator;

    public IServerOptimizer? ServerOptimizer { get; } = serverOptimizer;

    public override string Name => PreAggregator is null ? Rule.Name : $"{PreAggregator.Name}+{Rule.Name}";

    public override ContributionKind Contribution => ContributionKind.ModelUpdate;

    public override IRoundAggregation BeginAggregation(RoundPlan plan, int dimension) =>
        Rule is IStreamingRule streaming && PreAggregator is null
            ? new StreamingRound(this, plan, streaming.CreateAccumulator(dimension))
            : new BatchRound(this, plan, dimension);

    private void ApplyAggregate(Span<float> model, ReadOnlySpan<float> aggregate)
    {
        if (ServerOptimizer is null)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(model, aggregate, model);
        }
        else
        {
            ServerOptimizer.Apply(model, aggregate);
        }
    }

    private sealed class StreamingRound(RobustAggregationStrategy owner, RoundPlan plan, IStreamingAggregator accumulator)
        : RoundAggregation(plan, ContributionKind.ModelUpdate)
    {
        private readonly UpdateValidator _validator = new(accumulator.Dimension);

        protected override string? Take(in DeviceContribution contribution)
        {
            var check = _validator.Validate(contribution.Values.Span, contribution.Weight);
            if (!check.IsValid)
            {
                return $"device {contribution.DeviceId}: {check.Reason}";
            }

            accumulator.Add(contribution.Values.Span, (float)contribution.Weight);
            return null;
        }

        protected override void UpdateModel(Span<float> globalModel)
        {
            var aggregate = new float[accumulator.Dimension];
            accumulator.Complete(aggregate);
            owner.ApplyAggregate(globalModel, aggregate);
        }
    }

    private sealed class BatchRound(RobustAggregationStrategy owner, RoundPlan plan, int dimension)
        : RoundAggregation(plan, ContributionKind.ModelUpdate)
    {
        private readonly UpdateValidator _validator = new(dimension);
        private readonly List<float> _weights = [];
        private float[] _block = new float[(long)Math.Max(1, plan.Assignments.Count) * dimension];

        protected override string? Take(in DeviceContribution contribution)
        {
            var check = _validator.Validate(contribution.Values.Span, contribution.Weight);
            if (!check.IsValid)
            {
                return $"device {contribution.DeviceId}: {check.Reason}";
            }

            long offset = (long)_weights.Count * dimension;
            if (offset + dimension > _block.Length)
            {
                Array.Resize(ref _block, _block.Length * 2);
            }

            contribution.Values.Span.CopyTo(_block.AsSpan((int)offset, dimension));
            _weights.Add((float)contribution.Weight);
            return null;
        }

        protected override void UpdateModel(Span<float> globalModel)
        {
            int n = _weights.Count;
            var batch = new UpdateBatch(_block.AsMemory(0, n * dimension), n, dimension, _weights.ToArray());
            if (owner.PreAggregator is not null)
            {
                batch = owner.PreAggregator.Apply(batch);
            }

            var aggregate = new float[dimension];
            owner.Rule.Aggregate(batch, aggregate);
            owner.ApplyAggregate(globalModel, aggregate);
        }
    }
}
