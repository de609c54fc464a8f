using FedEdge.Aggregation;
using FedEdge.Aggregation.Attacks;
using FedEdge.Edge.Training;

namespace FedEdge.Cli.Simulation;

/// <summary>
/// Byzantine behaviour of simulated devices as <see cref="IUpdateTransform"/>s on Δ before compression, so attacks go
/// through the same error feedback, codec, signing and MQTT transport as honest updates. The forgeries are the
/// aggregation library's <see cref="IUpdateAttack"/>s (algorithms.md §2); label-flip is a data attack and needs none.
/// </summary>
public static class SimulationAttacks
{
    /// <summary>Attacks the simulator knows (option --attack).</summary>
    /// <remarks>On FAR-SIGN's ±1 answers, sign-flip inverts every bit and gaussian (N(0, 200) noise on ±1) makes them random
    /// bits; oppose answers from the honest devices' data and inverts: −sign⟨∇f_honest(x̃), u_k⟩, the sign that most
    /// opposes the honest majority (with FedAvg: −Δ trained on the honest data).</remarks>
    public static IReadOnlyList<string> Names { get; } = ["none", "sign-flip", "gaussian", "ipm", "alie", "label-flip", "oppose"];

    /// <summary>Attacks whose devices hold the honest devices' data instead of their own.</summary>
    public static bool ReadsHonestData(string attack) => attack == "oppose";

    /// <summary>Attacks that forge from the honest updates of the round and so need a <see cref="SimulationCollusion"/>.</summary>
    public static bool IsOmniscient(string attack) => attack is "ipm" or "alie";

    /// <summary>The library's forgery for <paramref name="attack"/>, or null for none and label-flip.</summary>
    /// <param name="devices">n, the devices of the run (ALIE's z depends on n and f).</param>
    /// <param name="attackers">f, the attackers of the run.</param>
    public static IUpdateAttack? CreateAttack(string attack, int devices, int attackers, int seed) => attack switch
    {
        "sign-flip" or "oppose" => new SignFlipAttack(),
        "gaussian" => new GaussianAttack(variance: 200, seed),
        "ipm" => new InnerProductManipulationAttack(epsilon: 0.1),
        "alie" => new LittleIsEnoughAttack(devices, attackers),
        "none" or "label-flip" => null,
        _ => throw new ArgumentException($"Unknown attack '{attack}' ({string.Join(", ", Names)})."),
    };

    /// <summary>An attacker's transform: replaces Δ by the forgery, from the colluding honest updates when it needs them.</summary>
    public sealed class Forging(IUpdateAttack attack, SimulationCollusion? collusion, CancellationToken cancellationToken) : IUpdateTransform
    {
        public IUpdateAttack Attack { get; } = attack ?? throw new ArgumentNullException(nameof(attack));

        public void Apply(Span<float> delta, long globalVersion)
        {
            var own = delta.ToArray();
            // IUpdateTransform is synchronous, so the attacker's agent blocks here (bounded by the collusion wait);
            // the runner raises the thread-pool minimum so that honest agents keep training meanwhile.
            var honest = collusion?.Honest(globalVersion, delta.Length, cancellationToken)
                // Nothing to collude on (e.g. an async attacker on an old version): forge from its own update.
                ?? new UpdateBatch(own, 1, own.Length);
            Attack.Forge(honest, own, delta);
        }
    }

    /// <summary>An honest device's transform in a run with colluding attackers: reports Δ, leaves it unchanged.</summary>
    public sealed class Reporting(SimulationCollusion collusion) : IUpdateTransform
    {
        public void Apply(Span<float> delta, long globalVersion) => collusion.Report(globalVersion, delta);
    }
}
