using System.Diagnostics;
using System.Net.Sockets;

namespace FedEdge.Testing;

/// <summary>The files of a TLS listener (as `fededge certs` writes them: ca.crt, broker.crt, broker.key).</summary>
public sealed record MosquittoTls(string CaFile, string CertFile, string KeyFile);

/// <summary>How a test's Mosquitto is configured. Everything lives in <see cref="Directory"/>.</summary>
public sealed record MosquittoOptions
{
    /// <summary>Where the configuration, the log, a generated password file and the persistence file go.</summary>
    public required string Directory { get; init; }

    /// <summary>The loopback port (default: one from <see cref="TestPorts"/>).</summary>
    public int? Port { get; init; }

    /// <summary>A password file written elsewhere (e.g. by `fededge devices export-mosquitto`).</summary>
    public string? PasswordFile { get; init; }

    public string? AclFile { get; init; }

    /// <summary>Users hashed into a password file in <see cref="Directory"/> with mosquitto_passwd.</summary>
    public IReadOnlyList<(string User, string Password)> Users { get; init; } = [];

    /// <summary>Sessions and queued QoS 1 messages kept on disk, so they survive <see cref="MosquittoServer.RestartAsync"/>.</summary>
    public bool Persistence { get; init; }

    /// <summary>Use the settings of the shipped deploy/mosquitto/mosquitto.conf for the listener (the ones a user runs).</summary>
    public bool ShippedSettings { get; init; }

    /// <summary>
    /// A second listener with TLS (1.2+) on <see cref="TlsPort"/>: with <see cref="ShippedSettings"/> the shipped
    /// configuration's TLS listener with these files, otherwise one with these files that takes the user name as client id.
    /// </summary>
    public MosquittoTls? Tls { get; init; }

    /// <summary>The TLS listener's loopback port (default: one from <see cref="TestPorts"/>).</summary>
    public int? TlsPort { get; init; }

    /// <summary>False: no plain listener, only the TLS one (needs <see cref="Tls"/>; not with <see cref="ShippedSettings"/>).</summary>
    public bool PlainListener { get; init; } = true;

    /// <summary>More configuration lines, appended last (for example a second listener with its TLS settings).</summary>
    public IReadOnlyList<string> ExtraLines { get; init; } = [];
}

/// <summary>
/// /usr/sbin/mosquitto for one test on a loopback port, ready once its own log says it listens on that port (so it is
/// Mosquitto, not some other server, that answers there); stopped with SIGTERM (persistence written) or killed.
/// </summary>
public sealed class MosquittoServer : IAsyncDisposable, IDisposable
{
    public const string Executable = "/usr/sbin/mosquitto";
    public const string PasswordTool = "/usr/bin/mosquitto_passwd";
    public const string InstallHint = "Mosquitto is needed: run scripts/install-deps.sh --test (installs mosquitto)";

    private readonly MosquittoOptions _options;
    private ServerProcess? _process;

    private MosquittoServer(MosquittoOptions options, int port, int tlsPort)
    {
        _options = options;
        Port = port;
        TlsPort = tlsPort;
        LogPath = Path.Combine(options.Directory, "mosquitto.log");
    }

    public static bool IsInstalled => File.Exists(Executable) && File.Exists(PasswordTool);

    public int Port { get; }

    /// <summary>The TLS listener's port (0 without <see cref="MosquittoOptions.Tls"/>).</summary>
    public int TlsPort { get; }

    /// <summary>mqtt://127.0.0.1:port</summary>
    public string Address => $"mqtt://127.0.0.1:{Port}";

    public Uri Uri => new(Address);

    public string LogPath { get; }

    public bool IsRunning => _process is { HasExited: false };

    public string Log() => File.Exists(LogPath) ? File.ReadAllText(LogPath) : "(no log)";

    public static async Task<MosquittoServer> StartAsync(MosquittoOptions options, CancellationToken cancellationToken = default)
    {
        Assert.True(IsInstalled, InstallHint);
        Directory.CreateDirectory(options.Directory);
        var server = new MosquittoServer(options, options.Port ?? TestPorts.Reserve(), options.Tls is null ? 0 : options.TlsPort ?? TestPorts.Reserve());
        await server.WriteConfigurationAsync(cancellationToken);
        await server.LaunchAsync(cancellationToken);
        return server;
    }

    /// <summary>Starts it again on the same port with the same configuration (after <see cref="StopAsync"/> or <see cref="Kill"/>).</summary>
    public Task RestartAsync(CancellationToken cancellationToken = default)
    {
        if (IsRunning) throw new InvalidOperationException("Mosquitto is still running");
        _process?.Dispose();
        return LaunchAsync(cancellationToken);
    }

    /// <summary>SIGTERM: Mosquitto writes its persistence file and exits.</summary>
    public async Task StopAsync()
    {
        if (_process is not null) await _process.StopAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>SIGKILL: nothing is written.</summary>
    public void Kill() => _process?.Kill();

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _process?.Dispose();
    }

    public void Dispose() => _process?.Dispose();

    /// <summary>
    /// The lines of deploy/mosquitto/mosquitto.conf without its files, persistence and logging: its plain listener
    /// replaced by <paramref name="listener"/> (in place: the settings after it are that listener's), and its TLS listener
    /// (the block with a certfile) dropped, or, with <paramref name="tls"/>, moved to that listener line and those files.
    /// </summary>
    public static IEnumerable<string> ShippedSettings(string listener, (string Listener, MosquittoTls Files)? tls = null)
    {
        var shipped = Path.Combine(RepositoryRoot.Path, "deploy", "mosquitto", "mosquitto.conf");
        string[] dropped = ["password_file", "acl_file", "persistence", "persistence_location", "autosave_interval", "log_dest", "log_type", "connection_messages", "user"];
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
            var isTls = block.Any(l => l.StartsWith("certfile ", StringComparison.Ordinal));
            if (isTls && tls is null) continue;
            foreach (var line in block)
            {
                yield return (line.Split(' ')[0], isTls) switch
                {
                    ("listener", true) => tls!.Value.Listener,
                    ("listener", false) => listener,
                    ("cafile", true) => $"cafile {tls!.Value.Files.CaFile}",
                    ("certfile", true) => $"certfile {tls!.Value.Files.CertFile}",
                    ("keyfile", true) => $"keyfile {tls!.Value.Files.KeyFile}",
                    _ => line,
                };
            }
        }
    }

    private async Task WriteConfigurationAsync(CancellationToken cancellationToken)
    {
        var listener = $"listener {Port} 127.0.0.1";
        var tlsListener = $"listener {TlsPort} 127.0.0.1";
        List<string> lines;
        if (_options.ShippedSettings)
        {
            lines = ShippedSettings(listener, _options.Tls is { } files ? (tlsListener, files) : null).ToList();
        }
        else
        {
            lines = _options.PlainListener ? [listener] : [];
            if (_options.Tls is { } files)
                lines.AddRange([tlsListener, $"cafile {files.CaFile}", $"certfile {files.CertFile}", $"keyfile {files.KeyFile}", "tls_version tlsv1.2", "use_username_as_clientid true"]);
        }
        var passwordFile = _options.PasswordFile;
        if (_options.Users.Count > 0)
        {
            passwordFile = Path.Combine(_options.Directory, "passwords");
            await File.WriteAllTextAsync(passwordFile, "", cancellationToken);
            foreach (var (user, password) in _options.Users)
                await RunToolAsync(PasswordTool, ["-b", passwordFile, user, password], cancellationToken);
        }
        if (!_options.ShippedSettings) lines.Add(passwordFile is null ? "allow_anonymous true" : "allow_anonymous false");
        if (passwordFile is not null) lines.Add($"password_file {passwordFile}");
        if (_options.AclFile is not null) lines.Add($"acl_file {_options.AclFile}");
        if (_options.Persistence)
        {
            lines.Add("persistence true");
            lines.Add($"persistence_location {_options.Directory}/");
            lines.Add("autosave_interval 1");
        }
        else
        {
            lines.Add("persistence false");
        }
        lines.Add($"log_dest file {LogPath}");
        lines.Add("log_type all");
        // As root Mosquitto switches to user "mosquitto", which cannot read the test's 0600 files; as anyone else the
        // setting has no effect.
        lines.Add($"user {Environment.UserName}");
        lines.AddRange(_options.ExtraLines);
        await File.WriteAllLinesAsync(Path.Combine(_options.Directory, "mosquitto.conf"), lines, cancellationToken);
    }

    private async Task LaunchAsync(CancellationToken cancellationToken)
    {
        // Only the log written by this start counts: a restart appends to the same file.
        var logStart = File.Exists(LogPath) ? new FileInfo(LogPath).Length : 0;
        _process = ServerProcess.Start(new ProcessStartInfo(Executable, ["-c", Path.Combine(_options.Directory, "mosquitto.conf")]), "mosquitto");
        int[] ports = TlsPort == 0 ? [Port] : _options.PlainListener ? [Port, TlsPort] : [TlsPort];
        await _process.WaitUntilReadyAsync(async () =>
        {
            var log = LogSince(logStart);
            if (!ports.All(p => log.Contains($"Opening ipv4 listen socket on port {p}.", StringComparison.Ordinal))) return false;
            foreach (var port in ports)
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync("127.0.0.1", port, cancellationToken);
            }
            return true;
        }, $"listening on port(s) {string.Join(", ", ports)}", TimeSpan.FromSeconds(15), Log, cancellationToken);
    }

    private string LogSince(long offset)
    {
        if (!File.Exists(LogPath)) return "";
        using var stream = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        stream.Seek(Math.Min(offset, stream.Length), SeekOrigin.Begin);
        return new StreamReader(stream).ReadToEnd();
    }

    private static async Task RunToolAsync(string file, string[] arguments, CancellationToken cancellationToken)
    {
        using var process = Process.Start(new ProcessStartInfo(file, arguments) { UseShellExecute = false, RedirectStandardError = true })
            ?? throw new InvalidOperationException($"{file} did not start");
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed: {await error}");
    }
}
