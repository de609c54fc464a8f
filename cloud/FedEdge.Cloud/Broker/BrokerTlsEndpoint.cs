using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using FedEdge.Protocol.Tls;
using MQTTnet.Certificates;
using MQTTnet.Server;

namespace FedEdge.Cloud.Broker;

/// <summary>
/// The embedded broker's listeners: plain TCP on the addresses <see cref="CloudOptions.BrokerBindAddress"/> names (one
/// family each, none implied), and, when a certificate is configured, TLS 1.2+ on <see cref="BrokerTlsOptions.Port"/>
/// with optional device client certificates checked against the device CA only.
/// </summary>
public static class BrokerTlsEndpoint
{
    /// <summary>Binds the plain listener to exactly <paramref name="addresses"/>.</summary>
    public static void BindPlain(MqttServerOptions options, ListenAddresses addresses, int port)
    {
        options.DefaultEndpointOptions.IsEnabled = true;
        options.DefaultEndpointOptions.Port = port;
        options.DefaultEndpointOptions.BoundInterNetworkAddress = addresses.V4 ?? IPAddress.None;
        options.DefaultEndpointOptions.BoundInterNetworkV6Address = addresses.V6 ?? IPAddress.None;
    }

    /// <summary>Turns on the TLS listener; returns the validator of device certificates (null when no device CA is set).</summary>
    public static PinnedChainValidator? EnableTls(MqttServerOptions options, BrokerTlsOptions tls, int port)
    {
        var certificate = TlsCertificates.LoadWithPrivateKey(tls.CertificateFile!, tls.KeyFile, tls.CertificatePassword);
        var addresses = ListenAddresses.Parse(tls.BindAddress, "Cloud:Tls:BindAddress");
        var endpoint = options.TlsEndpointOptions;
        endpoint.IsEnabled = true;
        endpoint.Port = port;
        endpoint.BoundInterNetworkAddress = addresses.V4 ?? IPAddress.None;
        endpoint.BoundInterNetworkV6Address = addresses.V6 ?? IPAddress.None;
        endpoint.CertificateProvider = new X509CertificateProvider(certificate);
        endpoint.SslProtocol = SslProtocols.Tls12 | SslProtocols.Tls13;
        if (string.IsNullOrWhiteSpace(tls.DeviceCaFile)) return null;

        var devices = new PinnedChainValidator(TlsCertificates.LoadTrustAnchors(tls.DeviceCaFile), PinnedChainValidator.Usage.Client);
        // Asked for, so that a device may present one; a client without one still logs in with a password unless required.
        endpoint.ClientCertificateRequired = true;
        endpoint.RemoteCertificateValidationCallback = (_, presented, chain, errors) =>
            presented is null ? !tls.RequireClientCertificate : devices.Validate(presented, errors & ~SslPolicyErrors.RemoteCertificateChainErrors, chain);
        return devices;
    }

    /// <summary>The device a validated client certificate names (its common name).</summary>
    public static string DeviceId(X509Certificate2 certificate) => certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
}
