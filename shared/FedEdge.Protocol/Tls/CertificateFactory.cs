using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace FedEdge.Protocol.Tls;

/// <summary>
/// Makes a CA and the certificates it signs for a test or small deployment (`fededge certs`): ECDSA P-256 keys,
/// a server certificate with the subject alternative names its clients dial, and device client certificates whose
/// common name is the device id (what the embedded broker's mutual TLS logs the device in as).
/// </summary>
public static class CertificateFactory
{
    /// <summary>Backdating of NotBefore, so that a device whose clock is a little behind accepts a fresh certificate.</summary>
    private static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(5);

    public static X509Certificate2 CreateAuthority(string name, TimeSpan validity, DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={Escape(name)}"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(now - ClockSkew, now + validity);
    }

    /// <summary>
    /// A TLS server certificate; each of <paramref name="names"/> is a DNS name or an IP address. It is good for client
    /// authentication too, because an Orleans silo presents the same certificate when it dials its peers (mutual TLS).
    /// </summary>
    public static X509Certificate2 IssueServer(X509Certificate2 authority, string commonName, IReadOnlyCollection<string> names, TimeSpan validity, DateTimeOffset now)
    {
        if (names.Count == 0) throw new ArgumentException("A server certificate needs at least one name (DNS name or IP address) its clients dial", nameof(names));
        var san = new SubjectAlternativeNameBuilder();
        foreach (var name in names)
        {
            if (IPAddress.TryParse(name, out var address)) san.AddIpAddress(address);
            else if (Uri.CheckHostName(name) == UriHostNameType.Dns) san.AddDnsName(name);
            else throw new ArgumentException($"'{name}' is neither a DNS name nor an IP address", nameof(names));
        }
        return Issue(authority, commonName, validity, now, [ServerAuthentication, ClientAuthentication], X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, san.Build());
    }

    /// <summary>A TLS client certificate for device <paramref name="deviceId"/> (its common name).</summary>
    public static X509Certificate2 IssueClient(X509Certificate2 authority, string deviceId, TimeSpan validity, DateTimeOffset now) =>
        Issue(authority, deviceId, validity, now, [ClientAuthentication], X509KeyUsageFlags.DigitalSignature, extension: null);

    private static Oid ServerAuthentication => new("1.3.6.1.5.5.7.3.1");
    private static Oid ClientAuthentication => new("1.3.6.1.5.5.7.3.2");

    private static X509Certificate2 Issue(X509Certificate2 authority, string commonName, TimeSpan validity, DateTimeOffset now, Oid[] usages,
        X509KeyUsageFlags keyUsage, X509Extension? extension)
    {
        if (!authority.HasPrivateKey) throw new ArgumentException("The CA certificate has no private key to sign with", nameof(authority));
        var notAfter = now + validity;
        if (notAfter > authority.NotAfter) notAfter = authority.NotAfter; // a certificate cannot outlive its issuer
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={Escape(commonName)}"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(keyUsage, true));
        var enhancedUsages = new OidCollection();
        foreach (var usage in usages) enhancedUsages.Add(usage);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(enhancedUsages, false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority, true, false));
        if (extension is not null) request.CertificateExtensions.Add(extension);
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F; // a positive serial number
        using var signed = request.Create(authority, now - ClockSkew, notAfter, serial);
        return signed.CopyWithPrivateKey(key);
    }

    /// <summary>
    /// Writes <paramref name="certificate"/> as PEM to <paramref name="certificateFile"/> and its private key (PKCS#8 PEM)
    /// to <paramref name="keyFile"/>, the key created readable by its owner only (0600) before any byte is written.
    /// </summary>
    public static void WritePem(X509Certificate2 certificate, string certificateFile, string keyFile)
    {
        using var key = certificate.GetECDsaPrivateKey() ?? throw new ArgumentException("Only ECDSA certificates with a private key are written", nameof(certificate));
        WriteKey(keyFile, key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(certificateFile, certificate.ExportCertificatePem() + "\n");
    }

    /// <summary>Reads a certificate and its key written by <see cref="WritePem"/> (a CA, to sign more certificates).</summary>
    public static X509Certificate2 ReadPem(string certificateFile, string keyFile) => TlsCertificates.LoadWithPrivateKey(certificateFile, keyFile);

    private static void WriteKey(string path, string pem)
    {
        if (File.Exists(path)) File.Delete(path);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var stream = new FileStream(path, options);
        using var writer = new StreamWriter(stream);
        writer.Write(pem);
        writer.Write('\n');
    }

    private static string Escape(string name) =>
        name.IndexOfAny([',', '+', '"', '\\', '<', '>', ';', '=']) >= 0 ? $"\"{name.Replace("\"", "\\\"", StringComparison.Ordinal)}\"" : name;
}
