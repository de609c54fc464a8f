using System.Diagnostics;
using System.Net.Sockets;
using FedEdge.Cloud.Broker;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// A Mosquitto broker for one test: /usr/sbin/mosquitto on a free loopback port with the password and ACL files
/// that `fededge devices export-mosquitto` writes; stopped (killed by its own process id) on dispose.
/// </summary>
public sealed class MosquittoBroker : IDisposable
{
    public const string Executable = "/usr/sbin/mosquitto";

    private readonly Process _process;

    private MosquittoBroker(Process process, int port, string logPath)
    {
        _process = process;
        Port = port;
        LogPath = logPath;
    }

    public int Port { get; }
    public string LogPath { get; }
    public string Address => $"mqtt://127.0.0.1:{Port}";

    public static bool IsInstalled => File.Exists(Executable);

    /// <summary>Starts Mosquitto on <paramref name="port"/> (default: a free one; pass the old port to restart it), and with
    /// <paramref name="certificates"/> (ca.crt, broker.crt/.key of `fededge certs`) the shipped TLS listener on <see cref="TlsPort"/>.</summary>
    public static async Task<MosquittoBroker> StartAsync(string directory, string passwordFile, string aclFile, int? port = null,
        FedEdge.Protocol.Tls.CertificateDirectory? certificates = null)
    {
        var listenPort = port ?? FreeTcpPort.Find();
        var tlsPort = certificates is null ? 0 : FreeTcpPort.Find();
        var config = Path.Combine(directory, "mosquitto.conf");
        var log = Path.Combine(directory, "mosquitto.log");
        // The shipped configuration's settings (deploy/mosquitto/mosquitto.conf), with this test's listeners, files and log.
        var lines = ShippedSettings($"listener {listenPort} 127.0.0.1", certificates is null ? null : ($"listener {tlsPort} 127.0.0.1", certificates)).ToList();
        lines.AddRange(new List<string>
        {
            $"password_file {passwordFile}",
            $"acl_file {aclFile}",
            "persistence false",
            $"log_dest file {log}",
            "log_type all",
        });
        // Started as root, Mosquitto drops to user "mosquitto", which cannot read the 0600 files the test wrote.
        if (Environment.UserName == "root") lines.Add("user root");
        File.WriteAllLines(config, lines);
        var process = Process.Start(new ProcessStartInfo(Executable, ["-c", config])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException("mosquitto did not start");
        var broker = new MosquittoBroker(process, listenPort, log) { TlsPort = tlsPort };
        var deadline = DateTime.UtcNow.AddSeconds(10);
        foreach (var probePort in tlsPort == 0 ? [listenPort] : new[] { listenPort, tlsPort })
        {
            while (true)
            {
                if (process.HasExited)
                    throw new InvalidOperationException($"mosquitto exited with {process.ExitCode}: {await process.StandardError.ReadToEndAsync()} {broker.Log()}");
                try
                {
                    using var probe = new TcpClient();
                    await probe.ConnectAsync("127.0.0.1", probePort);
                    break;
                }
                catch (SocketException) when (DateTime.UtcNow < deadline)
                {
                    await Task.Delay(50);
                }
            }
        }
        return broker;
    }

    /// <summary>The TLS listener's port (0 without certificates).</summary>
    public int TlsPort { get; private init; }

    /// <summary>
    /// The lines of deploy/mosquitto/mosquitto.conf without its files, persistence and logging: its plain listener
    /// replaced by <paramref name="listener"/> (in place: the settings after it are that listener's), and its TLS listener
    /// (the block with a certfile) dropped, or replaced by <paramref name="tls"/>'s listener with that directory's files.
    /// </summary>
    public static IEnumerable<string> ShippedSettings(string listener, (string Listener, FedEdge.Protocol.Tls.CertificateDirectory Files)? tls = null)
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "FedEdge.sln"))) directory = directory.Parent;
        var shipped = Path.Combine(directory?.FullName ?? throw new InvalidOperationException("FedEdge.sln not found above the test directory"), "deploy", "mosquitto", "mosquitto.conf");
        string[] dropped = ["password_file", "acl_file", "persistence", "persistence_location", "autosave_interval", "log_dest", "log_type", "connection_messages"];
        var settings = File.ReadLines(shipped).Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !dropped.Contains(l.Split(' ')[0])).ToList();
        // Blocks: the global settings, then one per `listener` line.
        var blocks = new List<List<string>> { new() };
        foreach (var line in settings)
        {
            if (line.StartsWith("listener ", StringComparison.Ordinal)) blocks.Add([]);
            blocks[^1].Add(line);
        }
        foreach (var block in blocks)
        {
            var isListener = block[0].StartsWith("listener ", StringComparison.Ordinal);
            var isTls = block.Any(l => l.StartsWith("certfile ", StringComparison.Ordinal));
            if (isTls && tls is null) continue;
            foreach (var line in block)
            {
                var key = line.Split(' ')[0];
                yield return (isListener && key == "listener", isTls, key) switch
                {
                    (true, true, _) => tls!.Value.Listener,
                    (true, false, _) => listener,
                    (_, true, "cafile") => $"cafile {tls!.Value.Files.AuthorityCertificate}",
                    (_, true, "certfile") => $"certfile {tls!.Value.Files.Certificate("broker")}",
                    (_, true, "keyfile") => $"keyfile {tls!.Value.Files.Key("broker")}",
                    _ => line,
                };
            }
        }
    }

    public string Log() => File.Exists(LogPath) ? File.ReadAllText(LogPath) : "(no log)";

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
