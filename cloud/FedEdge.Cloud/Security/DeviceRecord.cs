namespace FedEdge.Cloud.Security;

/// <summary>A registered device as the registry stores it (the password only as a <c>$7$</c> hash).</summary>
public sealed record DeviceRecord(
    string DeviceId,
    string Federation,
    string PasswordHash,
    byte[] PublicKey,
    bool Revoked,
    DateTimeOffset CreatedAt);
