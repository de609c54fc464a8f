namespace FedEdge.Aggregation.ServerOptimizers;

/// <summary>
/// FedAvgM (Hsu, Qi, Brown, "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
/// Classification", 2019): server momentum m ← β·m + Δ; x ← x + η·m. β = 0, η = 1 is plain FedAvg.
/// <example>β = 0.9, η = 1, m = 0: Δ = [1] gives m = [1], x += 1; Δ = [1] again gives m = [1.9], x += 1.9.</example>
/// </summary>
public sealed class FedAvgMOptimizer(double learningRate = 1.0, double momentum = 0.9) : ServerOptimizer
{
    private float[] _momentum = [];

    public double LearningRate { get; } = learningRate;

    public double Momentum { get; } = momentum;

    public override string Name => "fedavgm";

    protected override int StateLength => _momentum.Length;

    protected override void InitializeState(int length) => _momentum = new float[length];

    protected override IReadOnlyList<(string Name, float[] Vector)> Vectors => [("m", _momentum)];

    protected override void Step(Span<float> model, ReadOnlySpan<float> aggregate)
    {
        float beta = (float)Momentum, eta = (float)LearningRate;
        for (int j = 0; j < model.Length; j++)
        {
            float m = (beta * _momentum[j]) + aggregate[j];
            _momentum[j] = m;
            model[j] += eta * m;
        }
    }
}
