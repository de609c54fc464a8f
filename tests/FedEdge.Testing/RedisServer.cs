using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;

namespace FedEdge.Testing;

/// <summary>A throw-away redis-server on a loopback port from <see cref="TestPorts"/> (nothing saved to disk), killed on dispose.</summary>
public sealed class RedisServer : IDisposable
{
    public const string Executable = "/usr/bin/redis-server";

    private readonly ServerProcess _process;

    private RedisServer(ServerProcess process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string ConnectionString => $"127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync(string directory)
    {
        Assert.True(File.Exists(Executable), "redis-server is needed: run scripts/install-deps.sh --test (installs redis-server)");
        var port = TestPorts.Reserve();
        var process = ServerProcess.Start(new ProcessStartInfo(Executable,
            ["--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]));
        var server = new RedisServer(process, port);
        try
        {
            // Ready once Redis itself says so and answers PING on the port.
            await process.WaitUntilReadyAsync(async () => process.OutputContains("Ready to accept connections") && await PingAsync(port),
                $"accepting connections on port {port}", TimeSpan.FromSeconds(15));
        }
        catch
        {
            server.Dispose();
            throw;
        }
        return server;
    }

    public void Dispose() => _process.Dispose();

    private static async Task<bool> PingAsync(int port)
    {
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port);
        var stream = client.GetStream();
        await stream.WriteAsync("PING\r\n"u8.ToArray());
        var reply = new byte[7];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        await stream.ReadExactlyAsync(reply, timeout.Token);
        return reply.AsSpan().SequenceEqual("+PONG\r\n"u8);
    }
}
