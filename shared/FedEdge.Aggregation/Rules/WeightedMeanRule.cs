using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Weighted mean (FedAvg; McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
/// Data", AISTATS 2017): A = Σ_i w_i·Δ_i / Σ_i w_i, w_i = the device's sample count (uniform when unweighted).
/// Not robust: one Byzantine update moves it arbitrarily far. Decomposes, so it also streams
/// (<see cref="WeightedMeanAccumulator"/>).
/// <example>
/// Rows [1, 2], [3, 6] with weights 1 and 3: A = (1·[1, 2] + 3·[3, 6]) / 4 = [2.5, 5].
/// </example>
/// </summary>
public sealed class WeightedMeanRule : AggregationRule, IStreamingRule
{
    public override string Name => "mean";

    public IStreamingAggregator CreateAccumulator(int dimension) => new WeightedMeanAccumulator(dimension);

    protected override void AggregateCore(UpdateBatch updates, Span<float> result) =>
        RowCombination.Combine(updates, updates.NormalizedWeights(), result);
}
