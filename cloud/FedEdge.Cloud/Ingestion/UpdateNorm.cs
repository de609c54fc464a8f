using FedEdge.Compression;
using FedEdge.Protocol;

namespace FedEdge.Cloud.Ingestion;

/// <summary>The L2 norm of a verified update, from its decoded values or, for the sign codec, straight from its scales.</summary>
internal static class UpdateNorm
{
    /// <summary>‖Δ‖₂ of decoded values, accumulated in double so that large finite values do not overflow.</summary>
    public static double Of(ReadOnlySpan<float> delta)
    {
        double sum = 0;
        foreach (var value in delta) sum += (double)value * value;
        return Math.Sqrt(sum);
    }

    /// <summary>
    /// ‖Δ‖₂ without decoding where the payload allows it: a sign payload decodes to ±s_b on each block b, so
    /// ‖Δ‖₂² = Σ_b |b|·s_b². False for the other codecs (decode, then <see cref="Of"/>).
    /// </summary>
    public static bool TryFromPayload(VerifiedUpdate update, out double norm)
    {
        norm = 0;
        if (update.Codec is not SignCodec || !SignPayload.TryParse(update.Payload, out var payload).IsValid) return false;
        var blocks = payload.GetBlocks();
        var b = 0;
        double sum = 0;
        while (blocks.MoveNext(out _, out var length))
        {
            double scale = payload.Scales[b++];
            sum += length * scale * scale;
        }
        norm = Math.Sqrt(sum);
        return true;
    }
}
