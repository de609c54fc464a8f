namespace FedEdge.Edge.Mqtt;

/// <summary>How a <see cref="MqttLink"/> connects, who it is and what it announces.</summary>
public sealed class MqttLinkOptions
{
    /// <summary>Broker address, <c>mqtt://host:port</c> (or <c>mqtts://</c> for TLS).</summary>
    public required Uri Broker { get; init; }

    /// <summary>MQTT client id; FedEdge brokers require it to equal the device id.</summary>
    public required string ClientId { get; init; }

    /// <summary>For <c>mqtts://</c>: the only roots the broker's certificate may chain to (null = the system store).</summary>
    public System.Security.Cryptography.X509Certificates.X509Certificate2Collection? TrustedRoots { get; init; }

    /// <summary>For <c>mqtts://</c>: a client certificate with its private key (mutual TLS).</summary>
    public System.Security.Cryptography.X509Certificates.X509Certificate2? ClientCertificate { get; init; }

    public string? UserName { get; init; }
    public string? Password { get; init; }

    /// <summary>How long the broker keeps the session (subscriptions, queued QoS 1 messages) while offline.</summary>
    public TimeSpan SessionExpiry { get; init; } = TimeSpan.FromDays(7);

    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(30);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan ReconnectMinDelay { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Retained status topic: <see cref="OnlinePayload"/> on connect, <see cref="OfflinePayload"/> as last will.</summary>
    public string? StatusTopic { get; init; }
    public ReadOnlyMemory<byte> OnlinePayload { get; init; } = "online"u8.ToArray();
    public ReadOnlyMemory<byte> OfflinePayload { get; init; } = "offline"u8.ToArray();

    /// <summary>Topic filters subscribed (QoS 1) on every connect, in addition to those added at run time.</summary>
    public IReadOnlyList<string> Subscriptions { get; init; } = [];

    /// <summary>Largest packet the client accepts (0 = no limit announced).</summary>
    public uint MaximumPacketSize { get; init; }
}
