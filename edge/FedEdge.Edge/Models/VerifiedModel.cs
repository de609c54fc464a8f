using FedEdge.Protocol.Messages;

namespace FedEdge.Edge.Models;

/// <summary>A global model whose bytes matched the SHA-256 in an announcement signed by the cloud.</summary>
public sealed record VerifiedModel(ModelAnnouncement Announcement, byte[] AnnouncementBytes, byte[] ModelBytes)
{
    public long Version => Announcement.ModelVersion;
}
