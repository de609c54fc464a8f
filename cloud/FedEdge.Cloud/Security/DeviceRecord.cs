namespace FedEdge.Cloud.Security;

/// <summary>A registered device as the registry stores it (the password only as a <c>$7$</c> hash).</summary>
/// <param name="MaxSamples">The most samples it may claim for one update (its local dataset's size, given when it was
/// registered): a larger claim is capped to it, so its weight in a sample-weighted mean cannot be inflated. Null: the
/// federation's <c>MaxSampleCount</c> alone bounds it.</param>
public sealed record DeviceRecord(
    string DeviceId,
    string Federation,
    string PasswordHash,
    byte[] PublicKey,
    bool Revoked,
    DateTimeOffset CreatedAt,
    long? MaxSamples = null);
