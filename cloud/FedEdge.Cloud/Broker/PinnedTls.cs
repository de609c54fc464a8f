using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using FedEdge.Protocol.Tls;
using MQTTnet;

namespace FedEdge.Cloud.Broker;

/// <summary>MQTTnet client TLS that trusts only the CA in a file (not the system store), with an optional client certificate.</summary>
public static class PinnedTls
{
    public static MqttClientTlsOptions ClientOptions(string caFile, string? clientCertificateFile = null, string? clientKeyFile = null)
    {
        var validator = new PinnedChainValidator(TlsCertificates.LoadTrustAnchors(caFile), PinnedChainValidator.Usage.Server);
        var builder = new MqttClientTlsOptionsBuilder()
            .UseTls()
            .WithSslProtocols(SslProtocols.Tls12 | SslProtocols.Tls13)
            .WithCertificateValidationHandler(e => validator.Validate(e.Certificate, e.SslPolicyErrors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors, e.Chain));
        if (!string.IsNullOrWhiteSpace(clientCertificateFile))
            builder.WithClientCertificates(new X509Certificate2Collection(TlsCertificates.LoadWithPrivateKey(clientCertificateFile, clientKeyFile)));
        return builder.Build();
    }
}
