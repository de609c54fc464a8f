using System.Diagnostics;
using System.Net.Sockets;

namespace FedEdge.Edge.Tests.Brokers;

/// <summary>
/// /usr/sbin/mosquitto with a generated config (loopback listener, password file, on-disk persistence so
/// sessions and queued QoS 1 messages survive a restart), started and stopped by the test.
/// </summary>
public sealed class MosquittoBroker : ITestBroker
{
    public const string Executable = "/usr/sbin/mosquitto";
    private const string PasswordTool = "/usr/bin/mosquitto_passwd";
    private readonly int _port = FreePort.Next();
    private readonly TempDirectory _dir = new();
    private readonly List<(string User, string Password)> _users = [];
    private Process? _process;

    public static bool IsInstalled => File.Exists(Executable) && File.Exists(PasswordTool);

    public Uri Address => new($"mqtt://127.0.0.1:{_port}");

    public void AddUser(string userName, string password) => _users.Add((userName, password));

    public async Task StartAsync()
    {
        var config = _dir.Combine("mosquitto.conf");
        var passwords = _dir.Combine("passwords");
        File.WriteAllText(passwords, "");
        foreach (var (user, password) in _users)
            await RunAsync(PasswordTool, $"-b {passwords} {user} {password}");
        File.WriteAllLines(config,
        [
            $"listener {_port} 127.0.0.1",
            _users.Count > 0 ? "allow_anonymous false" : "allow_anonymous true",
            _users.Count > 0 ? $"password_file {passwords}" : "",
            "persistence true",
            $"persistence_location {_dir.Path}/",
            "autosave_interval 1",
            // Started as root, mosquitto would switch to its own user and could not write our temp folder.
            $"user {Environment.UserName}",
            $"log_dest file {_dir.Combine("mosquitto.log")}",
        ]);
        var start = new ProcessStartInfo(Executable, ["-c", config])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        _process = Process.Start(start) ?? throw new InvalidOperationException("Could not start mosquitto.");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        await WaitForPortAsync();
    }

    public async Task StopAsync()
    {
        if (_process is null)
            return;
        // SIGTERM: mosquitto writes its persistence file and exits.
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            await kill!.WaitForExitAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill();
        }
        _process.Dispose();
        _process = null;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _dir.Dispose();
    }

    private async Task WaitForPortAsync()
    {
        for (var i = 0; i < 100; i++)
        {
            if (_process!.HasExited)
                throw new InvalidOperationException($"mosquitto exited with code {_process.ExitCode}.");
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", _port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }
        throw new TimeoutException($"mosquitto did not listen on port {_port}.");
    }

    private static async Task RunAsync(string file, string arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { UseShellExecute = false, RedirectStandardError = true })!;
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{file} {arguments} failed: {await process.StandardError.ReadToEndAsync()}");
    }
}
