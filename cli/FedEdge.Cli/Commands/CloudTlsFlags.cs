using System.CommandLine;
using FedEdge.Cloud;
using FedEdge.Cloud.Broker;

namespace FedEdge.Cli.Commands;

/// <summary>`fededge cloud`'s TLS flags, mapped onto section "Cloud:Tls" (<see cref="BrokerTlsOptions"/>).</summary>
internal sealed class CloudTlsFlags
{
    private readonly Option<int?> _port = new("--tls-port") { Description = "Port of the embedded broker's TLS listener (default 8883; on when --tls-cert is given)." };
    private readonly Option<string?> _bind = new("--tls-bind") { Description = "Addresses of the TLS listener (default 0.0.0.0; '0.0.0.0,::' for both families)." };
    private readonly Option<string?> _certificate = new("--tls-cert") { Description = "Broker certificate: PEM (with --tls-key) or PKCS#12 .pfx (with --tls-password). Turns the TLS listener on." };
    private readonly Option<string?> _key = new("--tls-key") { Description = "PEM private key of --tls-cert." };
    private readonly Option<string?> _password = new("--tls-password") { Description = "Password of a .pfx --tls-cert or an encrypted PEM key." };
    private readonly Option<string?> _deviceCa = new("--device-ca") { Description = "PEM CA of device client certificates: devices may log in with a certificate (CN = device id) instead of a password." };
    private readonly Option<bool?> _requireClientCertificate = new("--require-client-cert") { Description = "Refuse TLS clients without a device certificate (needs --device-ca)." };
    private readonly Option<string?> _brokerCa = new("--broker-ca") { Description = "PEM CA trusted (and only it) when --broker is mqtts://host:port." };
    private readonly Option<bool?> _allowPlaintext = new("--allow-plaintext") { Description = "Allow plain MQTT on a non-loopback address (--bind) or to an external broker on another machine." };

    public static CloudTlsFlags Create() => new();

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { _port, _bind, _certificate, _key, _password, _deviceCa, _requireClientCertificate, _brokerCa, _allowPlaintext })
            command.Options.Add(option);
    }

    public void Read(ParseResult parse, Dictionary<string, string?> flags)
    {
        void Flag<T>(Option<T> option, string key)
        {
            if (parse.GetValue(option) is { } value) flags[$"{CloudOptions.Section}:{key}"] = value.ToString();
        }
        void Path(Option<string?> option, string key)
        {
            if (parse.GetValue(option) is { } value) flags[$"{CloudOptions.Section}:{key}"] = System.IO.Path.GetFullPath(value);
        }
        const string tls = nameof(CloudOptions.Tls);
        Flag(_port, $"{tls}:{nameof(BrokerTlsOptions.Port)}");
        Flag(_bind, $"{tls}:{nameof(BrokerTlsOptions.BindAddress)}");
        Path(_certificate, $"{tls}:{nameof(BrokerTlsOptions.CertificateFile)}");
        Path(_key, $"{tls}:{nameof(BrokerTlsOptions.KeyFile)}");
        Flag(_password, $"{tls}:{nameof(BrokerTlsOptions.CertificatePassword)}");
        Path(_deviceCa, $"{tls}:{nameof(BrokerTlsOptions.DeviceCaFile)}");
        Flag(_requireClientCertificate, $"{tls}:{nameof(BrokerTlsOptions.RequireClientCertificate)}");
        Path(_brokerCa, $"{tls}:{nameof(BrokerTlsOptions.CaFile)}");
        Flag(_allowPlaintext, nameof(CloudOptions.AllowPlaintextOnNonLoopback));
    }
}
