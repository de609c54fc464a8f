using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FedEdge.Protocol.Tls;

/// <summary>
/// Certificate validation that trusts only the given roots (CA pinning): the system's trust store is not consulted,
/// so a certificate from any public CA, or from a CA an attacker slipped into the store, is refused. Host names are
/// still checked by the TLS stack (<see cref="SslPolicyErrors.RemoteCertificateNameMismatch"/>).
/// </summary>
public sealed class PinnedChainValidator(X509Certificate2Collection roots, PinnedChainValidator.Usage usage)
{
    /// <summary>What the peer's certificate must be issued for (its extended key usage, when it has one).</summary>
    public enum Usage { Server, Client }

    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    public X509Certificate2Collection Roots { get; } = roots;

    /// <summary>True when <paramref name="certificate"/> chains to one of the pinned roots (and the name matched).</summary>
    public bool Validate(X509Certificate? certificate, SslPolicyErrors errors, X509Chain? presentedChain = null)
    {
        if (certificate is null) return false;
        if ((errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) != 0) return false;
        using var leaf = certificate as X509Certificate2 is { } c2 ? X509CertificateLoader.LoadCertificate(c2.RawData) : X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Roots);
        // Small deployments have no revocation endpoints; revocation is the registry's job (`fededge devices revoke`).
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(usage == Usage.Server ? ServerAuthentication : ClientAuthentication);
        if (presentedChain is not null)
            foreach (var element in presentedChain.ChainElements)
                if (!element.Certificate.RawDataMemory.Span.SequenceEqual(leaf.RawDataMemory.Span))
                    chain.ChainPolicy.ExtraStore.Add(element.Certificate);
        return chain.Build(leaf);
    }
}
