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

    /// <summary>Starts Mosquitto on <paramref name="port"/> (default: a free one; pass the old port to restart it).</summary>
    public static async Task<MosquittoBroker> StartAsync(string directory, string passwordFile, string aclFile, int? port = null)
    {
        var listenPort = port ?? FreeTcpPort.Find();
        var config = Path.Combine(directory, "mosquitto.conf");
        var log = Path.Combine(directory, "mosquitto.log");
        // The shipped configuration's settings (deploy/mosquitto/mosquitto.conf), with this test's listener, files and log.
        var lines = ShippedSettings($"listener {listenPort} 127.0.0.1").ToList();
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
        var broker = new MosquittoBroker(process, listenPort, log);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"mosquitto exited with {process.ExitCode}: {await process.StandardError.ReadToEndAsync()} {broker.Log()}");
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", listenPort);
                return broker;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>The lines of deploy/mosquitto/mosquitto.conf, its listener replaced by <paramref name="listener"/> (in place:
    /// the settings after it are that listener's), without its files, persistence and logging.</summary>
    public static IEnumerable<string> ShippedSettings(string listener)
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "FedEdge.sln"))) directory = directory.Parent;
        var shipped = Path.Combine(directory?.FullName ?? throw new InvalidOperationException("FedEdge.sln not found above the test directory"), "deploy", "mosquitto", "mosquitto.conf");
        string[] dropped = ["password_file", "acl_file", "persistence", "persistence_location", "autosave_interval", "log_dest", "log_type", "connection_messages"];
        return File.ReadLines(shipped).Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !dropped.Contains(l.Split(' ')[0]))
            .Select(l => l.StartsWith("listener ", StringComparison.Ordinal) ? listener : l);
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
