using FedEdge.Edge.Training;

namespace FedEdge.Cli.Simulation;

/// <summary>Byzantine update transforms that a malicious simulated device applies to Δ before compression.</summary>
internal static class SimulationAttacks
{
    /// <summary>The transform for an update attack, or null for honest devices and data attacks (label-flip).</summary>
    public static IUpdateTransform? Create(string attack, int seed) => attack switch
    {
        "sign-flip" => new SignFlipTransform(),
        "gaussian" => new GaussianTransform(Math.Sqrt(200), seed),
        _ => null,
    };

    /// <summary>Sends −Δ (the sign-flip attack of Allen-Zhu et al. / Karimireddy et al.).</summary>
    private sealed class SignFlipTransform : IUpdateTransform
    {
        public void Apply(Span<float> delta, long globalVersion)
        {
            foreach (ref var v in delta) v = -v;
        }
    }

    /// <summary>Replaces Δ by N(0, σ²) noise (σ² = 200, as the aggregation library's GaussianAttack).</summary>
    private sealed class GaussianTransform(double sigma, int seed) : IUpdateTransform
    {
        private readonly Random _random = new(seed);

        public void Apply(Span<float> delta, long globalVersion)
        {
            for (var i = 0; i < delta.Length; i++)
            {
                // Box–Muller.
                var u1 = 1.0 - _random.NextDouble();
                var u2 = _random.NextDouble();
                delta[i] = (float)(sigma * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            }
        }
    }
}
