using FedEdge.Aggregation.Rules;

namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// signSGD with majority vote (Bernstein et al., ICLR 2019) over packed sign bits: devices send the signs of their
/// update Δ_i = x_i − x (1 bit per coordinate); the server takes x ← x + η·sign(Σ_i sign(Δ_i)) — the same as
/// algorithms.md's x − η·sign(Σ sign(g_i)) with pseudo-gradients g_i = −Δ_i. Streaming, O(d·log n) bits.
/// </summary>
public sealed class SignVoteStrategy(double serverLearningRate, RoundOptions? options = null)
    : FederatedStrategy(options ?? new RoundOptions())
{
    public double ServerLearningRate { get; } = serverLearningRate > 0
        ? serverLearningRate
        : throw new ArgumentOutOfRangeException(nameof(serverLearningRate), serverLearningRate, "η must be positive.");

    public override string Name => "sign-vote";

    public override ContributionKind Contribution => ContributionKind.PackedSigns;

    public override IRoundAggregation BeginAggregation(RoundPlan plan, int dimension) =>
        new VoteRound(this, plan, new SignMajorityVoteAccumulator(dimension, Math.Max(1, plan.Assignments.Count)));

    private sealed class VoteRound(SignVoteStrategy owner, RoundPlan plan, SignMajorityVoteAccumulator vote)
        : RoundAggregation(plan, ContributionKind.PackedSigns)
    {
        protected override string? Take(in DeviceContribution contribution)
        {
            if (contribution.Bits.Length != vote.PackedLength)
            {
                return $"device {contribution.DeviceId}: {contribution.Bits.Length} bytes of signs, expected {vote.PackedLength}";
            }

            vote.AddPacked(contribution.Bits.Span);
            return null;
        }

        protected override void UpdateModel(Span<float> globalModel)
        {
            var direction = new float[vote.Dimension];
            vote.Complete(direction);
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(direction, (float)owner.ServerLearningRate, globalModel, globalModel);
        }
    }
}
