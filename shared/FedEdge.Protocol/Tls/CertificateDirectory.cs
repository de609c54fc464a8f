using System.Security.Cryptography.X509Certificates;

namespace FedEdge.Protocol.Tls;

/// <summary>
/// The files `fededge certs` writes in one directory: <c>ca.crt</c>/<c>ca.key</c>, and <c>NAME.crt</c>/<c>NAME.key</c>
/// for each server or device certificate the CA signs (keys 0600). Brokers and agents are pointed at these files.
/// </summary>
public sealed class CertificateDirectory(string root)
{
    public static readonly TimeSpan DefaultAuthorityValidity = TimeSpan.FromDays(3650);
    public static readonly TimeSpan DefaultValidity = TimeSpan.FromDays(825);

    public string Root { get; } = Path.GetFullPath(root);
    public string AuthorityCertificate => Path.Combine(Root, "ca.crt");
    public string AuthorityKey => Path.Combine(Root, "ca.key");
    public string Certificate(string name) => Path.Combine(Root, $"{CheckName(name)}.crt");
    public string Key(string name) => Path.Combine(Root, $"{CheckName(name)}.key");

    /// <summary>Makes the CA; refuses to replace an existing one (every certificate it signed would be orphaned).</summary>
    public void CreateAuthority(string name, TimeSpan validity, DateTimeOffset now)
    {
        if (File.Exists(AuthorityKey)) throw new InvalidOperationException($"{AuthorityKey} exists already; remove it first to make a new CA");
        Directory.CreateDirectory(Root);
        using var authority = CertificateFactory.CreateAuthority(name, validity, now);
        CertificateFactory.WritePem(authority, AuthorityCertificate, AuthorityKey);
    }

    /// <summary>A server certificate named <paramref name="name"/> for the DNS names and IP addresses in <paramref name="names"/>.</summary>
    public void IssueServer(string name, IReadOnlyCollection<string> names, TimeSpan validity, DateTimeOffset now)
    {
        using var authority = LoadAuthority();
        using var certificate = CertificateFactory.IssueServer(authority, name, names, validity, now);
        CertificateFactory.WritePem(certificate, Certificate(name), Key(name));
    }

    /// <summary>A client certificate for device <paramref name="deviceId"/>, written as <c>DEVICE.crt</c>/<c>DEVICE.key</c>.</summary>
    public void IssueDevice(string deviceId, TimeSpan validity, DateTimeOffset now)
    {
        using var authority = LoadAuthority();
        using var certificate = CertificateFactory.IssueClient(authority, deviceId, validity, now);
        CertificateFactory.WritePem(certificate, Certificate(deviceId), Key(deviceId));
    }

    private X509Certificate2 LoadAuthority()
    {
        if (!File.Exists(AuthorityCertificate) || !File.Exists(AuthorityKey))
            throw new InvalidOperationException($"No CA in {Root} (ca.crt and ca.key): run `fededge certs ca --dir {Root}` first");
        return CertificateFactory.ReadPem(AuthorityCertificate, AuthorityKey);
    }

    private static string CheckName(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') && name is not ("ca" or "." or "..")
            ? name
            : throw new ArgumentException($"'{name}' is not a certificate name (1–64 of A–Z a–z 0–9 - _ ., not 'ca')");
}
