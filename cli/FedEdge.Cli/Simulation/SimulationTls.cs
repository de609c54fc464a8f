using FedEdge.Cloud;
using FedEdge.Protocol.Tls;

namespace FedEdge.Cli.Simulation;

/// <summary>
/// `fededge sim --tls`: a CA and a broker certificate for localhost made in the run's directory (as `fededge certs`
/// does), the embedded broker's TLS listener on a free loopback port, and the agents pinning that CA.
/// </summary>
internal sealed class SimulationTls
{
    private readonly CertificateDirectory _certificates;

    private SimulationTls(CertificateDirectory certificates) => _certificates = certificates;

    public string CaFile => _certificates.AuthorityCertificate;

    public static SimulationTls Create(string directory)
    {
        var certificates = new CertificateDirectory(directory);
        var now = TimeProvider.System.GetUtcNow();
        certificates.CreateAuthority("fededge sim CA", TimeSpan.FromDays(2), now);
        certificates.IssueServer("broker", ["localhost", "127.0.0.1"], TimeSpan.FromDays(1), now);
        return new SimulationTls(certificates);
    }

    public void Configure(CloudOptions options)
    {
        options.Tls.CertificateFile = _certificates.Certificate("broker");
        options.Tls.KeyFile = _certificates.Key("broker");
        options.Tls.Port = 0;
        options.Tls.BindAddress = "127.0.0.1";
    }
}
