using System.Diagnostics;
using System.Net.Sockets;

namespace FedEdge.EndToEnd.Tests;

/// <summary>
/// /usr/sbin/mosquitto for one test on a given loopback port, authenticating from the password and ACL files the
/// simulation wrote; killed (by its own process) on dispose.
/// </summary>
public sealed class MosquittoProcess : IDisposable
{
    public const string Executable = "/usr/sbin/mosquitto";

    private readonly Process _process;
    private readonly string _log;

    private MosquittoProcess(Process process, string log)
    {
        _process = process;
        _log = log;
    }

    public static bool IsInstalled => File.Exists(Executable);

    /// <summary>
    /// A free loopback port below the kernel's ephemeral range (32768–60999 by default). The simulation picks the port
    /// long before Mosquitto binds it, and every other server in the tests takes a port-0 (ephemeral) one: a port from
    /// that range could be taken meanwhile by another test's embedded broker, whose login the cloud then failed
    /// (seen once in CI as "refused the cloud's login … NotAuthorized").
    /// </summary>
    public static int ReservePort()
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var port = Random.Shared.Next(20_000, 32_000);
            try
            {
                using var listener = new TcpListener(System.Net.IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
            }
        }
        throw new InvalidOperationException("no free loopback port in [20000, 32000)");
    }

    public string Log() => File.Exists(_log) ? File.ReadAllText(_log) : "(no log)";

    /// <param name="certificates">When set, the listener is TLS (1.2+) with this directory's ca.crt and broker.crt/.key (`fededge certs`).</param>
    public static async Task<MosquittoProcess> StartAsync(int port, string passwordFile, string aclFile, CancellationToken cancellationToken,
        FedEdge.Protocol.Tls.CertificateDirectory? certificates = null)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(passwordFile))!;
        var config = Path.Combine(directory, "mosquitto.conf");
        var log = Path.Combine(directory, "mosquitto.log");
        var lines = new List<string>
        {
            $"listener {port} 127.0.0.1",
            "allow_anonymous false",
            $"password_file {passwordFile}",
            $"acl_file {aclFile}",
            "persistence false",
            $"log_dest file {log}",
        };
        if (certificates is not null)
        {
            lines.InsertRange(1,
            [
                $"cafile {certificates.AuthorityCertificate}",
                $"certfile {certificates.Certificate("broker")}",
                $"keyfile {certificates.Key("broker")}",
                "tls_version tlsv1.2",
                "use_username_as_clientid true",
            ]);
        }
        // As root Mosquitto drops to user "mosquitto", which cannot read the 0600 password file.
        if (Environment.UserName == "root") lines.Add("user root");
        await File.WriteAllLinesAsync(config, lines, cancellationToken);
        var process = Process.Start(new ProcessStartInfo(Executable, ["-c", config]) { UseShellExecute = false, RedirectStandardError = true })
            ?? throw new InvalidOperationException("mosquitto did not start");
        var broker = new MosquittoProcess(process, log);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"mosquitto exited with {process.ExitCode}: {await process.StandardError.ReadToEndAsync(cancellationToken)}");
            try
            {
                // Listening, and it is Mosquitto that listens (not some other server on the port).
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", port, cancellationToken);
                if (broker.Log().Contains($"Opening ipv4 listen socket on port {port}.", StringComparison.Ordinal)) return broker;
                if (DateTime.UtcNow >= deadline) throw new InvalidOperationException($"port {port} answers but mosquitto did not report listening on it: {broker.Log()}");
                await Task.Delay(50, cancellationToken);
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50, cancellationToken);
            }
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(5000);
        }
        _process.Dispose();
    }
}
