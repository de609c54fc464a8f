namespace FedEdge.Aggregation;

/// <summary>
/// An update kept in its compressed form that adds itself into a running sum, so a streaming rule (the FedBuff
/// buffer's weighted mean) never materialises the d-coordinate vector: for a sign payload that is ⌈d/8⌉ bytes read
/// instead of 4·d written and read again.
/// </summary>
public interface IAccumulableUpdate
{
    /// <summary>d, the coordinates the update adds to.</summary>
    int Dimension { get; }

    /// <summary>
    /// <paramref name="accumulator"/> += <paramref name="weight"/> · Δ when the update is well formed and finite; returns
    /// null, or why it was refused, in which case the accumulator is unchanged.
    /// </summary>
    string? AddTo(Span<float> accumulator, float weight);
}
