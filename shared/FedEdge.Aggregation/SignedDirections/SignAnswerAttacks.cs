namespace FedEdge.Aggregation.SignedDirections;

/// <summary>
/// Byzantine answers for the simulator (algorithms.md §2's attacks carried over to FAR-SIGN's bits): an attacker can
/// only choose signs along directions it did not choose, which is what bounds its influence.
/// </summary>
public static class SignAnswerAttacks
{
    /// <summary>Sign flip: every answer inverted (the bit analogue of sending −Δ).</summary>
    public static void Flip(Span<byte> packet)
    {
        int count = SignAnswerPacket.Count(packet);
        for (int k = 0; k < count; k++)
        {
            SignAnswerPacket.Set(packet, k, SignAnswerPacket.Sign(packet, k) < 0);
        }
    }

    /// <summary>Random: K independent fair bits from <paramref name="seed"/> (SplitMix64, reproducible).</summary>
    public static void Randomize(Span<byte> packet, ulong seed)
    {
        int count = SignAnswerPacket.Count(packet);
        ulong bits = 0;
        for (int k = 0; k < count; k++)
        {
            if ((k & 63) == 0)
            {
                bits = RademacherDirections.Mix(seed + (ulong)((k >> 6) + 1) * 0x9E3779B97F4A7C15UL);
            }

            SignAnswerPacket.Set(packet, k, ((bits >> (k & 63)) & 1) != 0);
        }
    }

    /// <summary>
    /// Colluding: the sign that most opposes the honest majority, b_k = −sign⟨ḡ_honest, u_k⟩, ḡ the honest devices'
    /// mean gradient at the attacker's x̃ (an omniscient adversary, which a simulation can afford).
    /// </summary>
    public static int Colluding(SignAnswerer answerer, ulong workSeed, string deviceId, ReadOnlySpan<float> honestMeanGradient, int count, Span<byte> packet)
    {
        ArgumentNullException.ThrowIfNull(answerer);
        int length = answerer.AnswerFirstOrder(workSeed, deviceId, honestMeanGradient, count, packet);
        Flip(packet[..length]);
        return length;
    }
}
