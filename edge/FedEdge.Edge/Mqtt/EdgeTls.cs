using System.Security.Cryptography.X509Certificates;
using FedEdge.Protocol.Tls;

namespace FedEdge.Edge.Mqtt;

/// <summary>The agent's TLS material for its broker link: the pinned CA (required for mqtts://) and an optional client certificate.</summary>
public static class EdgeTls
{
    public static (X509Certificate2Collection? Roots, X509Certificate2? ClientCertificate) Load(Uri broker, EdgeMqttOptions mqtt)
    {
        if (broker.Scheme is not ("mqtts" or "ssl" or "tls"))
        {
            if (!string.IsNullOrWhiteSpace(mqtt.ClientCertificateFile))
                throw new InvalidOperationException($"Edge:Mqtt:ClientCertificateFile is set but the broker '{broker}' is not TLS (use mqtts://host:8883)");
            return (null, null);
        }
        if (string.IsNullOrWhiteSpace(mqtt.CaFile))
            throw new InvalidOperationException($"Broker '{broker}' is TLS: set Edge:Mqtt:CaFile (`fededge edge --broker-ca ca.crt`), the CA the agent trusts for it (and only it)");
        var roots = TlsCertificates.LoadTrustAnchors(mqtt.CaFile);
        var client = string.IsNullOrWhiteSpace(mqtt.ClientCertificateFile) ? null : TlsCertificates.LoadWithPrivateKey(mqtt.ClientCertificateFile, mqtt.ClientKeyFile);
        return (roots, client);
    }
}
