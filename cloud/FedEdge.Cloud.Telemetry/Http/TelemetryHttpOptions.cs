using System.Net;

namespace FedEdge.Cloud.Telemetry.Http;

/// <summary>
/// Settings of the cloud's HTTP API: section "Telemetry:Http". Off by default; when on it listens on loopback
/// unless told otherwise, and it refuses to listen on another address without an API key.
/// </summary>
public sealed class TelemetryHttpOptions
{
    public const string Section = "Telemetry:Http";

    /// <summary>Header that carries the API key.</summary>
    public const string ApiKeyHeader = "X-Api-Key";

    public bool Enabled { get; set; }

    /// <summary>IP address to listen on: "127.0.0.1" (default), "::1", or e.g. "0.0.0.0" (needs <see cref="ApiKey"/>).</summary>
    public string BindAddress { get; set; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (then read <see cref="TelemetryHttpApi.Address"/>).</summary>
    public int Port { get; set; } = 8480;

    /// <summary>When set, every request but /healthz must carry it in the X-Api-Key header.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Throws naming the bad setting; returns the address to bind.</summary>
    public IPAddress Validate()
    {
        if (!IPAddress.TryParse(BindAddress, out var address))
            throw new ArgumentException($"{Section}:BindAddress '{BindAddress}' is not an IP address");
        if (Port is < 0 or > 65535) throw new ArgumentException($"{Section}:Port {Port} is not a port");
        if (!IPAddress.IsLoopback(address) && string.IsNullOrEmpty(ApiKey))
            throw new ArgumentException($"{Section}: refusing to serve the API on {BindAddress} without {Section}:ApiKey (set a key, or bind to 127.0.0.1)");
        if (ApiKey is { Length: > 0 and < 16 })
            throw new ArgumentException($"{Section}:ApiKey is too short ({ApiKey.Length} characters; use at least 16)");
        return address;
    }
}
