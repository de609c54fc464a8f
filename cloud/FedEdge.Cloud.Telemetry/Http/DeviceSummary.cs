namespace FedEdge.Cloud.Telemetry.Http;

/// <summary>A registered device as the HTTP API shows it: no password hash, no key material.</summary>
public sealed record DeviceSummary(string DeviceId, string Federation, bool Revoked, DateTimeOffset CreatedAt);
