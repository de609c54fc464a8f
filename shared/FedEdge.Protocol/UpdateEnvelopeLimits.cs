using FedEdge.Compression;

namespace FedEdge.Protocol;

/// <summary>
/// The largest update envelope a model of d parameters can legitimately produce, so that a receiver bounds what a chunk
/// announces (and what it is ready to hold) by the model instead of by a fixed, much larger limit.
/// </summary>
public static class UpdateEnvelopeLimits
{
    /// <summary>What an envelope may carry besides its payload (metrics, drift statistics and report, ids, signature) by
    /// default: the drift statistics' own bounds (<c>DriftStatisticsCheck</c>) keep them far below this.</summary>
    public const int DefaultMetadataBytes = 1 << 20;

    /// <summary>
    /// Bytes of the largest valid codec payload for <paramref name="dimension"/> coordinates, over every codec a device may
    /// choose: fp32 takes 4·d; top-k at α = 1 with fp32 values up to 4 + 5 bytes per coordinate; scaled sign with one
    /// segment and one block per coordinate 5 + 4 bytes per coordinate plus ⌈d/8⌉ bytes of bits.
    /// </summary>
    public static long LargestPayloadBytes(int dimension)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dimension);
        return PayloadHeader.MaxLength + 16 + (9L * dimension) + ((dimension + 7L) / 8);
    }

    /// <summary>The largest envelope for a model of <paramref name="dimension"/> parameters, capped at
    /// <paramref name="ceiling"/>.</summary>
    public static int MaxEnvelopeBytes(int dimension, int ceiling, int metadataBytes = DefaultMetadataBytes) =>
        (int)Math.Min(ceiling, LargestPayloadBytes(dimension) + metadataBytes);
}
