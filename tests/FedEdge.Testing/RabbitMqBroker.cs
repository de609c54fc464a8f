using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace FedEdge.Testing;

/// <summary>
/// A throw-away RabbitMQ node with the rabbitmq_amqp1_0 plugin, the stand-in for Event Hubs: its own node name,
/// mnesia, logs, config and Erlang cookie in a temporary directory, listening on a free loopback port, with a
/// user whose name and password are the SAS key name and key. Stopped (and the directory removed) on dispose.
/// </summary>
public sealed class RabbitMqBroker : IAsyncLifetime
{
    public const string KeyName = "RootManageSharedAccessKey";
    public const string Key = "c2VjcmV0LWtleS1mb3ItdGVzdHM+/=";
    private const string Bin = "/usr/lib/rabbitmq/bin";

    private readonly string _root = Path.Combine(Path.GetTempPath(), "fededge-rabbitmq", Guid.NewGuid().ToString("N")[..12]);
    private readonly StringBuilder _output = new();
    private Process? _process;
    private Dictionary<string, string> _environment = [];

    public int Port { get; private set; }

    public string NodeName { get; } = $"fededge-test-{Guid.NewGuid():N}@localhost";

    /// <summary>An Event Hubs connection string pointing at this broker (plain AMQP via UseDevelopmentEmulator).</summary>
    public string ConnectionString(string hub) =>
        $"Endpoint=sb://127.0.0.1:{Port}/;SharedAccessKeyName={KeyName};SharedAccessKey={Key};EntityPath={hub};UseDevelopmentEmulator=true";

    public async Task InitializeAsync()
    {
        if (!File.Exists(Path.Combine(Bin, "rabbitmq-server")))
            throw new InvalidOperationException("rabbitmq-server is not installed (needed for the Event Hubs integration tests): run scripts/install-deps.sh --test");
        Directory.CreateDirectory(_root);
        Port = TestPorts.Reserve();
        var distributionPort = TestPorts.Reserve();
        await File.WriteAllTextAsync(Path.Combine(_root, "rabbitmq.conf"), $"""
            listeners.tcp.1 = 127.0.0.1:{Port}
            loopback_users = none
            default_user = {KeyName}
            default_pass = {Key}
            default_permissions.configure = .*
            default_permissions.read = .*
            default_permissions.write = .*
            log.console = true
            log.console.level = warning
            log.file = false
            """);
        await File.WriteAllTextAsync(Path.Combine(_root, "enabled_plugins"), "[].");
        _environment = new()
        {
            ["HOME"] = _root, // the Erlang cookie goes here
            ["RABBITMQ_NODENAME"] = NodeName,
            ["RABBITMQ_MNESIA_BASE"] = Path.Combine(_root, "mnesia"),
            ["RABBITMQ_LOG_BASE"] = Path.Combine(_root, "log"),
            ["RABBITMQ_CONFIG_FILE"] = Path.Combine(_root, "rabbitmq.conf"),
            ["RABBITMQ_ADVANCED_CONFIG_FILE"] = Path.Combine(_root, "advanced.config"),
            ["RABBITMQ_CONF_ENV_FILE"] = Path.Combine(_root, "rabbitmq-env.conf"),
            ["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(_root, "enabled_plugins"),
            ["RABBITMQ_PID_FILE"] = Path.Combine(_root, "rabbitmq.pid"),
            ["RABBITMQ_DIST_PORT"] = distributionPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        await RunToolAsync("rabbitmq-plugins", "--offline", "enable", "rabbitmq_amqp1_0");

        _process = Process.Start(Start("rabbitmq-server")) ?? throw new InvalidOperationException("rabbitmq-server did not start");
        _process.OutputDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        // A fresh node on a loaded 2-core machine can take half a minute.
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"rabbitmq-server exited with {_process.ExitCode}: {Output()}");
            if (await AcceptsAmqpAsync()) return;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"rabbitmq-server did not accept connections on port {Port} within 120 s: {Output()}");
            await Task.Delay(250);
        }
    }

    /// <summary>Drops every client connection (a link loss as the sink sees it).</summary>
    public Task CloseAllConnectionsAsync() => RunToolAsync("rabbitmqctl", "close_all_connections", "test: simulated link loss");

    public async Task DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            try
            {
                await RunToolAsync("rabbitmqctl", "stop");
            }
            catch (InvalidOperationException)
            {
            }
            if (!_process.WaitForExit(15_000)) _process.Kill(entireProcessTree: true);
        }
        _process?.Dispose();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private string Output()
    {
        lock (_output) return _output.ToString();
    }

    // The AMQP 1.0 plugin shares the AMQP listener; it is up once the AMQP 1.0 protocol header is answered in kind.
    private async Task<bool> AcceptsAmqpAsync()
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, Port);
            var stream = client.GetStream();
            await stream.WriteAsync("AMQP\x03\x01\x00\x00"u8.ToArray());
            var reply = new byte[8];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await stream.ReadExactlyAsync(reply, timeout.Token);
            return reply[4] == 3;
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or EndOfStreamException)
        {
            return false;
        }
    }

    private ProcessStartInfo Start(string tool, params string[] arguments)
    {
        var info = new ProcessStartInfo(Path.Combine(Bin, tool), arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _root,
        };
        foreach (var (name, value) in _environment) info.Environment[name] = value;
        return info;
    }

    private async Task RunToolAsync(string tool, params string[] arguments)
    {
        using var process = Process.Start(Start(tool, arguments)) ?? throw new InvalidOperationException($"{tool} did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{tool} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await output}{await error}");
    }
}
