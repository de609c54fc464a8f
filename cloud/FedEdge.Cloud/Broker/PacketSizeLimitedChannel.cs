using System.Buffers;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using MQTTnet.Channel;

namespace FedEdge.Cloud.Broker;

/// <summary>An MQTT packet announced larger than the broker takes; the connection is closed before its body is read.</summary>
public sealed class MqttPacketTooLargeException(long announced, int limit, bool isFirstPacket)
    : IOException($"MQTT {(isFirstPacket ? "CONNECT " : "")}packet announcing {announced} bytes exceeds the limit of {limit}")
{
    public long Announced { get; } = announced;
    public int Limit { get; } = limit;
}

/// <summary>
/// Reads a connection's bytes through the MQTT framing (fixed header, remaining length, body) as MQTTnet asks for them,
/// and throws <see cref="MqttPacketTooLargeException"/> on the byte that completes a remaining length above the limit,
/// before MQTTnet sees it: MQTTnet allocates a packet's body as soon as it knows the length (MQTTnet.Server has no
/// maximum packet size), so a CONNECT announcing 200 MiB cost 200 MiB before anyone logged in. The first packet (the
/// CONNECT) has its own, smaller limit.
/// </summary>
public sealed class PacketSizeLimitedChannel(IMqttChannel inner, int maxFirstPacketBytes, int maxPacketBytes) : IMqttChannel
{
    private enum Part { FixedHeader, RemainingLength, Body }

    private Part _part = Part.FixedHeader;
    private long _length;
    private int _shift;
    private long _bodyLeft;
    private bool _first = true;

    public X509Certificate2 ClientCertificate => inner.ClientCertificate;
    public EndPoint RemoteEndPoint => inner.RemoteEndPoint;
    public EndPoint LocalEndPoint => inner.LocalEndPoint;
    public bool IsSecureConnection => inner.IsSecureConnection;

    public Task ConnectAsync(CancellationToken cancellationToken) => inner.ConnectAsync(cancellationToken);
    public Task DisconnectAsync(CancellationToken cancellationToken) => inner.DisconnectAsync(cancellationToken);
    public Task WriteAsync(ReadOnlySequence<byte> buffer, bool isEndOfPacket, CancellationToken cancellationToken) =>
        inner.WriteAsync(buffer, isEndOfPacket, cancellationToken);

    /// <summary>Told of a refused packet before the read fails (MQTTnet closes the connection without saying why).</summary>
    public Action<MqttPacketTooLargeException>? Refused { get; init; }

    public async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        var read = await inner.ReadAsync(buffer, offset, count, cancellationToken);
        try
        {
            Inspect(buffer.AsSpan(offset, read));
        }
        catch (MqttPacketTooLargeException e)
        {
            Refused?.Invoke(e);
            throw;
        }
        return read;
    }

    /// <summary>Follows the framing over bytes read (one reader at a time, as MQTTnet reads a connection).</summary>
    public void Inspect(ReadOnlySpan<byte> bytes)
    {
        var i = 0;
        while (i < bytes.Length)
        {
            switch (_part)
            {
                case Part.FixedHeader:
                    i++;
                    (_part, _length, _shift) = (Part.RemainingLength, 0, 0);
                    break;
                case Part.RemainingLength:
                    var b = bytes[i++];
                    _length |= (long)(b & 0x7F) << _shift;
                    _shift += 7;
                    var limit = _first ? maxFirstPacketBytes : maxPacketBytes;
                    // Refused as soon as the length is known to exceed the limit, even mid-varint.
                    if (_length > limit) throw new MqttPacketTooLargeException(_length, limit, _first);
                    if ((b & 0x80) != 0)
                    {
                        if (_shift >= 28) throw new InvalidDataException("MQTT remaining length longer than 4 bytes");
                        break;
                    }
                    _first = false;
                    (_part, _bodyLeft) = _length == 0 ? (Part.FixedHeader, 0L) : (Part.Body, _length);
                    break;
                case Part.Body:
                    var skip = (int)Math.Min(_bodyLeft, bytes.Length - i);
                    i += skip;
                    if ((_bodyLeft -= skip) == 0) _part = Part.FixedHeader;
                    break;
            }
        }
    }

    public void Dispose() => inner.Dispose();
}
