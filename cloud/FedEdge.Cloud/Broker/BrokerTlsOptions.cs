namespace FedEdge.Cloud.Broker;

/// <summary>
/// TLS of the cloud's MQTT links, section "Cloud:Tls": the embedded broker's TLS listener (on when
/// <see cref="CertificateFile"/> is set), its optional mutual TLS for devices, and the CA the cloud pins when it
/// connects to an external broker over <c>mqtts://</c>.
/// </summary>
public sealed class BrokerTlsOptions
{
    /// <summary>Port of the embedded broker's TLS listener (0 = pick a free one; then in <c>EmbeddedBroker.TlsPort</c>).</summary>
    public int Port { get; set; } = 8883;

    /// <summary>Addresses the TLS listener binds, comma-separated, at most one IPv4 and one IPv6 ("0.0.0.0", "::", "0.0.0.0,::").</summary>
    public string BindAddress { get; set; } = "0.0.0.0";

    /// <summary>The broker's certificate: PEM (with <see cref="KeyFile"/>) or PKCS#12 (.pfx/.p12, with <see cref="CertificatePassword"/>).</summary>
    public string? CertificateFile { get; set; }

    /// <summary>PEM private key of <see cref="CertificateFile"/> (when that is PEM and does not hold the key itself).</summary>
    public string? KeyFile { get; set; }

    /// <summary>Password of a PKCS#12 certificate or of an encrypted PEM key.</summary>
    public string? CertificatePassword { get; set; }

    /// <summary>
    /// PEM CA that signs device client certificates. When set, a device may log in over TLS with a certificate whose
    /// common name is its device id instead of a password (it still acts only as that device).
    /// </summary>
    public string? DeviceCaFile { get; set; }

    /// <summary>Refuse TLS clients without a device certificate (needs <see cref="DeviceCaFile"/>; the cloud's own login uses loopback).</summary>
    public bool RequireClientCertificate { get; set; }

    /// <summary>PEM CA the cloud trusts, and only it, when it connects to an external broker over <c>mqtts://</c>.</summary>
    public string? CaFile { get; set; }

    /// <summary>Optional client certificate (PEM, key in <see cref="ClientKeyFile"/>) for the cloud's own connection to an external broker.</summary>
    public string? ClientCertificateFile { get; set; }

    public string? ClientKeyFile { get; set; }

    public bool ListenerEnabled => !string.IsNullOrWhiteSpace(CertificateFile);
}

/// <summary>Checks the TLS and binding settings before anything listens or connects.</summary>
public static class BrokerTlsValidation
{
    public static void Validate(CloudOptions options)
    {
        var tls = options.Tls;
        if (options.UsesEmbeddedBroker)
        {
            var plain = ListenAddresses.Parse(options.BrokerBindAddress, "Cloud:BrokerBindAddress");
            if (!plain.LoopbackOnly && !options.AllowPlaintextOnNonLoopback)
                throw new ArgumentException($"Cloud:BrokerBindAddress '{options.BrokerBindAddress}' is not loopback: plain MQTT would carry device passwords and updates in clear. " +
                    "Give devices the TLS listener (Cloud:Tls:CertificateFile, `fededge cloud --tls-cert`) and keep plain TCP on 127.0.0.1, or set Cloud:AllowPlaintextOnNonLoopback (`--allow-plaintext`).");
            if (tls.ListenerEnabled)
            {
                _ = ListenAddresses.Parse(tls.BindAddress, "Cloud:Tls:BindAddress");
                if (tls.Port is < 0 or > 65535) throw new ArgumentException($"Cloud:Tls:Port {tls.Port} is not a port");
            }
            if (tls.RequireClientCertificate && string.IsNullOrWhiteSpace(tls.DeviceCaFile))
                throw new ArgumentException("Cloud:Tls:RequireClientCertificate needs Cloud:Tls:DeviceCaFile, the CA that signs device certificates");
            if (!string.IsNullOrWhiteSpace(tls.DeviceCaFile) && !tls.ListenerEnabled)
                throw new ArgumentException("Cloud:Tls:DeviceCaFile is set but the TLS listener is off: set Cloud:Tls:CertificateFile (`--tls-cert`)");
        }
        else if (options.ExternalBrokerUsesTls)
        {
            if (string.IsNullOrWhiteSpace(tls.CaFile))
                throw new ArgumentException($"Broker '{options.Broker}' is TLS: set Cloud:Tls:CaFile (`--broker-ca`), the CA the cloud trusts for it (and only it)");
        }
        else if (!IsLoopbackHost(options.ExternalBrokerEndpoint().Host) && !options.AllowPlaintextOnNonLoopback)
        {
            throw new ArgumentException($"Broker '{options.Broker}' is plain MQTT to another machine: the cloud's service password would cross the network in clear. " +
                "Use mqtts://host:8883 with Cloud:Tls:CaFile (`--broker-ca`), or set Cloud:AllowPlaintextOnNonLoopback (`--allow-plaintext`).");
        }
    }

    private static bool IsLoopbackHost(string host) =>
        string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)
        || (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var address) && System.Net.IPAddress.IsLoopback(address));
}
