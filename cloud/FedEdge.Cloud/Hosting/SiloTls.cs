using System.Net.Security;
using System.Security.Authentication;
using FedEdge.Protocol.Tls;
using Orleans.Connections.Security;

namespace FedEdge.Cloud.Hosting;

/// <summary>
/// TLS between silos and from Orleans clients to the gateway, section "Cloud:SiloTls": every silo presents a certificate
/// signed by the cluster CA (<c>fededge certs server</c>) and accepts only peers whose certificate chains to that CA
/// (mutual TLS). Off unless <see cref="CertificateFile"/> is set.
/// </summary>
public sealed class SiloTlsOptions
{
    /// <summary>This silo's certificate: PEM (with <see cref="KeyFile"/>) or PKCS#12 (with <see cref="CertificatePassword"/>).</summary>
    public string? CertificateFile { get; set; }

    public string? KeyFile { get; set; }

    public string? CertificatePassword { get; set; }

    /// <summary>PEM CA of the cluster: the only issuer of silo (and client) certificates accepted.</summary>
    public string? CaFile { get; set; }

    public bool Enabled => !string.IsNullOrWhiteSpace(CertificateFile);
}

/// <summary>Applies <see cref="SiloTlsOptions"/> to a silo or an Orleans client.</summary>
public static class SiloTls
{
    public static void Validate(SiloTlsOptions options)
    {
        if (options.Enabled && string.IsNullOrWhiteSpace(options.CaFile))
            throw new ArgumentException("Cloud:SiloTls:CertificateFile is set without Cloud:SiloTls:CaFile, the cluster CA that silos check each other's certificates against");
    }

    public static void Apply(ISiloBuilder silo, SiloTlsOptions options)
    {
        if (!options.Enabled) return;
        var (certificate, configure) = Prepare(options);
        silo.UseTls(certificate, configure);
    }

    public static void Apply(IClientBuilder client, SiloTlsOptions options)
    {
        if (!options.Enabled) return;
        var (certificate, configure) = Prepare(options);
        client.UseTls(certificate, configure);
    }

    private static (System.Security.Cryptography.X509Certificates.X509Certificate2, Action<TlsOptions>) Prepare(SiloTlsOptions options)
    {
        Validate(options);
        var certificate = TlsCertificates.LoadWithPrivateKey(options.CertificateFile!, options.KeyFile, options.CertificatePassword);
        var peers = new PinnedChainValidator(TlsCertificates.LoadTrustAnchors(options.CaFile!), PinnedChainValidator.Usage.Server);
        return (certificate, tls =>
        {
            tls.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
            tls.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
            // Silos dial each other by the addresses in the membership table, not by name: a peer is whoever holds a
            // certificate from the cluster CA, so the name check is left out and the chain is built against that CA only.
            tls.RemoteCertificateValidation = (presented, chain, errors) =>
                peers.Validate(presented, errors & ~(SslPolicyErrors.RemoteCertificateChainErrors | SslPolicyErrors.RemoteCertificateNameMismatch), chain);
        }
        );
    }
}
