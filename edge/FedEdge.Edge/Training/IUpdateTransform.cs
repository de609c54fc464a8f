namespace FedEdge.Edge.Training;

/// <summary>
/// Changes the local update Δ = local − global in place before compression. The production agent has none;
/// simulations plug in Byzantine behaviour here (sign flip, noise, ...) so that attacks go through the same
/// compression, error feedback, signing and transport as honest updates.
/// </summary>
public interface IUpdateTransform
{
    /// <param name="delta">Δ, modified in place.</param>
    /// <param name="globalVersion">The model version Δ was trained from.</param>
    void Apply(Span<float> delta, long globalVersion);
}
