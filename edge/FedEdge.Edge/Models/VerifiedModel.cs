using FedEdge.Protocol.Messages;

namespace FedEdge.Edge.Models;

/// <summary>A global model whose bytes matched the SHA-256 in an announcement signed by the cloud.</summary>
public sealed record VerifiedModel(ModelAnnouncement Announcement, byte[] AnnouncementBytes, byte[] ModelBytes)
{
    public long Version => Announcement.ModelVersion;

    /// <summary>The model stream: 0 = the federation's model, c &gt; 0 = cluster model c (FedDAA).</summary>
    public int Cluster => Announcement.Cluster;
}
