using FedEdge.Protocol;
using FedEdge.Protocol.Messages;

namespace FedEdge.Edge.Models;

/// <summary>A global model whose bytes matched the SHA-256 in an announcement signed by the cloud.</summary>
public sealed record VerifiedModel(ModelAnnouncement Announcement, byte[] AnnouncementBytes, byte[] ModelBytes)
{
    public long Version => Announcement.ModelVersion;

    /// <summary>The model stream: 0 = the federation's model, c &gt; 0 = cluster model c (FedDAA).</summary>
    public int Cluster => Announcement.Cluster;

    /// <summary>The ONNX model (the verified bytes without FedMM's statistics, see <see cref="ModelBundle"/>).</summary>
    public ReadOnlyMemory<byte> OnnxBytes => ModelBundle.Model(Announcement, ModelBytes);

    /// <summary>FedMM: the server's aggregated statistics Ŝ published with the model (empty otherwise).</summary>
    public float[] Statistics() => ModelBundle.Statistics(Announcement, ModelBytes);

    /// <summary>What the federation asks devices to compute (FedAvg when the announcement says nothing).</summary>
    public AlgorithmSpec Algorithm => AlgorithmSpec.Parse(Announcement.Algorithm);
}
