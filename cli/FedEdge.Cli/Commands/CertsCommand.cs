using System.CommandLine;
using FedEdge.Protocol.Tls;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge certs`: a CA and the certificates it signs, for a test or small deployment (deploy/README.md, docs/security.md):
/// `ca` makes ca.crt/ca.key, `server` a broker certificate with the names its clients dial, `device` a client
/// certificate whose common name is the device id. PEM files; private keys 0600.
/// </summary>
internal static class CertsCommand
{
    public static Command Create()
    {
        var command = new Command("certs", "Make a CA, broker (server) certificates and device client certificates as PEM files.");
        command.Subcommands.Add(AuthorityCommand());
        command.Subcommands.Add(ServerCommand());
        command.Subcommands.Add(DeviceCommand());
        return command;
    }

    /// <summary>Runs a step; a refusal (existing CA, missing CA, bad name) is one line on stderr and exit code 2.</summary>
    private static int Reported(Action step)
    {
        try
        {
            step();
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"fededge certs: {e.Message}");
            return 2;
        }
    }

    private static Option<string> Directory() => new("--dir") { Description = "Directory of ca.crt/ca.key and the certificates.", DefaultValueFactory = _ => "fededge-certs" };

    private static Option<int> Days(int days) => new("--days") { Description = "Validity in days.", DefaultValueFactory = _ => days };

    private static Command AuthorityCommand()
    {
        var dir = Directory();
        var name = new Option<string>("--name") { Description = "The CA's common name.", DefaultValueFactory = _ => "FedEdge CA" };
        var days = Days((int)CertificateDirectory.DefaultAuthorityValidity.TotalDays);
        var command = new Command("ca", "Make the CA (ca.crt, ca.key); refuses to replace an existing one.") { dir, name, days };
        command.SetAction(parse => Reported(() =>
        {
            var certificates = new CertificateDirectory(parse.GetValue(dir)!);
            certificates.CreateAuthority(parse.GetValue(name)!, TimeSpan.FromDays(parse.GetValue(days)), TimeProvider.System.GetUtcNow());
            Console.WriteLine($"CA: {certificates.AuthorityCertificate} (key {certificates.AuthorityKey}, 0600)");
        }));
        return command;
    }

    private static Command ServerCommand()
    {
        var dir = Directory();
        var name = new Option<string>("--name") { Description = "File name and common name of the certificate.", DefaultValueFactory = _ => "broker" };
        var san = new Option<string[]>("--san") { Description = "A DNS name or IP address clients dial (repeat: --san localhost --san 127.0.0.1 --san mqtt.example.org).", Required = true, AllowMultipleArgumentsPerToken = true };
        var days = Days((int)CertificateDirectory.DefaultValidity.TotalDays);
        var command = new Command("server", "Make a broker certificate signed by the CA (NAME.crt, NAME.key).") { dir, name, san, days };
        command.SetAction(parse => Reported(() =>
        {
            var certificates = new CertificateDirectory(parse.GetValue(dir)!);
            var certificateName = parse.GetValue(name)!;
            certificates.IssueServer(certificateName, parse.GetValue(san)!, TimeSpan.FromDays(parse.GetValue(days)), TimeProvider.System.GetUtcNow());
            Console.WriteLine($"Server certificate: {certificates.Certificate(certificateName)} (key {certificates.Key(certificateName)}, 0600)");
        }));
        return command;
    }

    private static Command DeviceCommand()
    {
        var dir = Directory();
        var device = new Argument<string>("device") { Description = "Device id (the certificate's common name)." };
        var days = Days((int)CertificateDirectory.DefaultValidity.TotalDays);
        var command = new Command("device", "Make a device client certificate signed by the CA (DEVICE.crt, DEVICE.key) for mutual TLS.") { device, dir, days };
        command.SetAction(parse => Reported(() =>
        {
            var certificates = new CertificateDirectory(parse.GetValue(dir)!);
            var id = parse.GetValue(device)!;
            certificates.IssueDevice(id, TimeSpan.FromDays(parse.GetValue(days)), TimeProvider.System.GetUtcNow());
            Console.WriteLine($"Device certificate: {certificates.Certificate(id)} (key {certificates.Key(id)}, 0600)");
        }));
        return command;
    }
}
