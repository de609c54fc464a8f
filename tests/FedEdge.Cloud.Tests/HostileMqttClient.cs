using System.Net.Sockets;
using System.Text;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// A raw TCP MQTT client of our own, for attacks MQTTnet's client will not produce: packets announcing sizes it never
/// sends, idle connections held open, hand-built CONNECTs.
/// </summary>
public sealed class HostileMqttClient : IDisposable
{
    private readonly TcpClient _tcp;

    private HostileMqttClient(TcpClient tcp) => _tcp = tcp;

    public NetworkStream Stream => _tcp.GetStream();

    public static async Task<HostileMqttClient> ConnectAsync(int port)
    {
        var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", port);
        return new HostileMqttClient(tcp);
    }

    /// <summary>An MQTT fixed header: type byte and remaining length as a variable byte integer.</summary>
    public static byte[] FixedHeader(byte type, long remainingLength)
    {
        var bytes = new List<byte> { type };
        do
        {
            var b = (byte)(remainingLength % 128);
            remainingLength /= 128;
            if (remainingLength > 0) b |= 0x80;
            bytes.Add(b);
        }
        while (remainingLength > 0);
        return [.. bytes];
    }

    /// <summary>An MQTT 3.1.1 CONNECT with user name and password (clean session, keep-alive 60 s).</summary>
    public static byte[] Connect(string clientId, string userName, string password)
    {
        var body = new List<byte>();
        void String(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            body.Add((byte)(b.Length >> 8));
            body.Add((byte)b.Length);
            body.AddRange(b);
        }
        String("MQTT");
        body.Add(4); // protocol level 3.1.1
        body.Add(0xC2); // user name, password, clean session
        body.Add(0);
        body.Add(60);
        String(clientId);
        String(userName);
        String(password);
        return [.. FixedHeader(0x10, body.Count), .. body];
    }

    /// <summary>Writes, ignoring a connection the broker already closed (it may close mid-write).</summary>
    public async Task<bool> TryWriteAsync(byte[] bytes)
    {
        try
        {
            await Stream.WriteAsync(bytes);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>Reads until the broker closes the connection (true) or <paramref name="timeout"/> passes (false); the
    /// bytes received on the way are returned.</summary>
    public async Task<(bool Closed, byte[] Received)> WaitForCloseAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var n = await Stream.ReadAsync(buffer, cts.Token);
                if (n == 0) return (true, received.ToArray());
                received.Write(buffer, 0, n);
            }
        }
        catch (OperationCanceledException)
        {
            return (false, received.ToArray());
        }
        catch (IOException)
        {
            return (true, received.ToArray()); // reset by the broker
        }
    }

    public void Dispose() => _tcp.Dispose();
}
