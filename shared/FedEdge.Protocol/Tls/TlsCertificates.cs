using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FedEdge.Protocol.Tls;

/// <summary>Loads the certificates TLS needs from files: PEM (certificate + key) or PKCS#12 (PFX), and CA bundles.</summary>
public static class TlsCertificates
{
    /// <summary>
    /// A certificate with its private key: <paramref name="certificateFile"/> is a PFX (.pfx/.p12, with
    /// <paramref name="password"/>) or a PEM certificate whose key is in <paramref name="keyFile"/> (or in the same file).
    /// </summary>
    public static X509Certificate2 LoadWithPrivateKey(string certificateFile, string? keyFile = null, string? password = null)
    {
        if (!File.Exists(certificateFile))
            throw new FileNotFoundException($"TLS certificate file '{certificateFile}' does not exist", certificateFile);
        var extension = Path.GetExtension(certificateFile).ToLowerInvariant();
        X509Certificate2 certificate;
        if (extension is ".pfx" or ".p12")
        {
            certificate = X509CertificateLoader.LoadPkcs12FromFile(certificateFile, password, X509KeyStorageFlags.Exportable);
        }
        else
        {
            var key = keyFile ?? certificateFile;
            if (!File.Exists(key)) throw new FileNotFoundException($"TLS private key file '{key}' does not exist", key);
            using var pem = string.IsNullOrEmpty(password)
                ? X509Certificate2.CreateFromPemFile(certificateFile, key)
                : X509Certificate2.CreateFromEncryptedPemFile(certificateFile, password, key);
            // A PEM key is ephemeral; SslStream on some platforms needs a key it can persist, so go through PKCS#12.
            certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.Exportable);
        }
        if (!certificate.HasPrivateKey)
            throw new InvalidOperationException($"TLS certificate '{certificateFile}' has no private key (give the key file too)");
        return certificate;
    }

    /// <summary>The certificates of a PEM bundle (a CA file): the only roots a pinned connection trusts.</summary>
    public static X509Certificate2Collection LoadTrustAnchors(string caFile)
    {
        if (!File.Exists(caFile)) throw new FileNotFoundException($"CA file '{caFile}' does not exist", caFile);
        var anchors = new X509Certificate2Collection();
        try
        {
            anchors.ImportFromPemFile(caFile);
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"CA file '{caFile}' is not a PEM certificate bundle: {e.Message}", e);
        }
        if (anchors.Count == 0) throw new InvalidOperationException($"CA file '{caFile}' holds no PEM certificate");
        return anchors;
    }
}
