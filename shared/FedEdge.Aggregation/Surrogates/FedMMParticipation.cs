using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace FedEdge.Aggregation.Surrogates;

/// <summary>
/// FedMM's partial participation (algorithms.md §5: "device i active with probability p"), drawn so that the server and
/// the device agree without a message: device i is active in version v iff u(seed, v, i) &lt; p, with u uniform in [0, 1)
/// from SHA-256 of (seed, v, device id). The device must know: its control variate moves only with a statistic the
/// server counts, so an inactive device sends nothing. Example: p = 1 makes every device active.
/// </summary>
public static class FedMMParticipation
{
    public static bool IsActive(int seed, long version, string deviceId, double participation) =>
        participation >= 1 || Draw(seed, version, deviceId) < participation;

    /// <summary>u(seed, v, i) ∈ [0, 1).</summary>
    public static double Draw(int seed, long version, string deviceId)
    {
        ArgumentNullException.ThrowIfNull(deviceId);
        Span<byte> input = stackalloc byte[12 + Encoding.UTF8.GetMaxByteCount(deviceId.Length)];
        BinaryPrimitives.WriteInt32LittleEndian(input, seed);
        BinaryPrimitives.WriteInt64LittleEndian(input[4..], version);
        var length = 12 + Encoding.UTF8.GetBytes(deviceId, input[12..]);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input[..length], hash);
        return (BinaryPrimitives.ReadUInt64LittleEndian(hash) >> 11) * (1.0 / (1UL << 53));
    }
}
