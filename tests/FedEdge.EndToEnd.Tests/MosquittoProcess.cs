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

    public string Log() => File.Exists(_log) ? File.ReadAllText(_log) : "(no log)";

    public static async Task<MosquittoProcess> StartAsync(int port, string passwordFile, string aclFile, CancellationToken cancellationToken)
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
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", port, cancellationToken);
                return broker;
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
