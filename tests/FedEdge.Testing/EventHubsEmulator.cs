using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Amqp;
using Amqp.Framing;
using Amqp.Handler;
using Amqp.Listener;
using Amqp.Types;

namespace FedEdge.Testing;

/// <summary>
/// A small Azure Event Hubs endpoint for tests, on AMQPNetLite's listener side: plain AMQP 1.0 on a loopback
/// <see cref="TestPorts"/> port, reached by Azure.Messaging.EventHubs through its development-emulator connection
/// string (<see cref="ConnectionString"/>), so the SDK's real network path runs (SASL, connection, sessions, links,
/// transfers, dispositions). What it implements, because the SDK's producer uses it:
/// <list type="bullet">
/// <item>SASL MSSBCBS (the SDK's mechanism: authentication follows on the connection), then claims-based security: <c>put-token</c> requests on <c>$cbs</c> carrying a
/// <c>SharedAccessSignature</c> that is checked (HMAC-SHA256 with the key, key name, expiry); a link to the hub is
/// refused (<c>amqp:unauthorized-access</c>) on a connection that has not put a valid token for it.</item>
/// <item>The <c>$management</c> node: <c>READ</c> of <c>com.microsoft:eventhub</c> (name, created_at,
/// partition_count, partition_ids) and of <c>com.microsoft:partition</c> (sequence numbers, offset, time, empty).</item>
/// <item>Sending links to <c>HUB</c> and <c>HUB/Partitions/N</c>, with max-message-size on the attach (the SDK sizes
/// its batches by it); messages in the batch format (<see cref="BatchFormat"/>: each data section an encoded AMQP
/// message) or plain; the partition chosen by the <c>x-opt-partition-key</c> annotation (a stable hash, not the
/// service's), by the link's partition, or round-robin; each stored event gets the service annotations'
/// values (sequence number, offset, enqueued time) and the delivery is accepted only after it is stored.</item>
/// </list>
/// Not implemented: receiving (consumer links, epochs), idempotent publishing, geo-replication, TLS, AAD tokens.
/// <see cref="StopAsync"/> closes the listener and every open connection; <see cref="StartAsync"/> listens again on
/// the same port; stored events survive both (the service's durability, in memory).
/// </summary>
public sealed class EventHubsEmulator : IAsyncDisposable
{
    /// <summary>AMQP message format of an Event Hubs batch: one data section per encoded event.</summary>
    public const uint BatchFormat = 0x80013700;

    public const string KeyName = "RootManageSharedAccessKey";
    public const long MaxMessageSize = 1024 * 1024; // the standard tier's limit

    private static readonly Symbol PartitionKeyAnnotation = new("x-opt-partition-key");

    private readonly string _key;
    private readonly List<EmulatedEvent>[] _partitions;
    private readonly ConcurrentDictionary<ListenerConnection, ConcurrentDictionary<string, DateTimeOffset>> _tokens = new();
    private readonly DateTimeOffset _createdAt = DateTimeOffset.UtcNow;
    private ContainerHost? _host;
    private int _roundRobin;
    private long _refusedTokens, _refusedLinks, _transfers, _batchTransfers;

    public EventHubsEmulator(string hubName, int partitionCount = 4)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(partitionCount, 1);
        HubName = hubName;
        _key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        _partitions = [.. Enumerable.Range(0, partitionCount).Select(_ => new List<EmulatedEvent>())];
        Port = TestPorts.Reserve();
    }

    public string HubName { get; }

    public int Port { get; }

    public int PartitionCount => _partitions.Length;

    /// <summary>The SDK's development-emulator connection string for this endpoint and hub.</summary>
    public string ConnectionString =>
        $"Endpoint=sb://127.0.0.1:{Port};SharedAccessKeyName={KeyName};SharedAccessKey={_key};EntityPath={HubName};UseDevelopmentEmulator=true";

    /// <summary>put-token requests refused (bad signature, key name, expired).</summary>
    public long RefusedTokens => Interlocked.Read(ref _refusedTokens);

    /// <summary>Link attaches refused (unknown hub or partition, no token).</summary>
    public long RefusedLinks => Interlocked.Read(ref _refusedLinks);

    /// <summary>Messages received on hub links (one per SDK send).</summary>
    public long Transfers => Interlocked.Read(ref _transfers);

    /// <summary>Of <see cref="Transfers"/>, those in the batch format (<see cref="BatchFormat"/>).</summary>
    public long BatchTransfers => Interlocked.Read(ref _batchTransfers);

    /// <summary>Connections accepted since the start (each client connection once).</summary>
    public int ConnectionsAccepted => _connectionsAccepted;

    private int _connectionsAccepted;

    public bool IsRunning => _host is not null;

    /// <summary>Listens (again) on <see cref="Port"/>.</summary>
    public Task StartAsync()
    {
        if (_host is not null) return Task.CompletedTask;
        var host = new ContainerHost(new Address($"amqp://127.0.0.1:{Port}"));
        var listener = host.Listeners[0];
        listener.SASL.EnableMechanism(ClaimsBasedSecurityMechanism.Name, new ClaimsBasedSecurityMechanism());
        listener.AMQP.MaxFrameSize = 64 * 1024;
        listener.HandlerFactory = _ => new ConnectionEvents(this);
        host.RegisterRequestProcessor("$cbs", new ClaimsProcessor(this));
        host.RegisterRequestProcessor("$management", new ManagementProcessor(this));
        host.RegisterLinkProcessor(new HubLinkProcessor(this));
        host.Open();
        _host = host;
        return Task.CompletedTask;
    }

    /// <summary>Stops listening and closes every open connection (as a service outage would); events stay stored.</summary>
    public async Task StopAsync()
    {
        var host = _host;
        _host = null;
        if (host is null) return;
        host.Close();
        foreach (var connection in _tokens.Keys)
        {
            _tokens.TryRemove(connection, out _);
            try
            {
                await Task.Run(() => connection.Close(TimeSpan.FromSeconds(2), new Error(ErrorCode.ConnectionForced) { Description = "emulator stopped" }));
            }
            catch (AmqpException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    public ValueTask DisposeAsync() => new(StopAsync());

    /// <summary>A copy of one partition's events, in sequence order.</summary>
    public IReadOnlyList<EmulatedEvent> Partition(int partition)
    {
        lock (_partitions[partition]) return [.. _partitions[partition]];
    }

    /// <summary>A copy of all stored events, partition by partition.</summary>
    public IReadOnlyList<EmulatedEvent> AllEvents() => [.. Enumerable.Range(0, _partitions.Length).SelectMany(Partition)];

    public int Count => Enumerable.Range(0, _partitions.Length).Sum(p => { lock (_partitions[p]) return _partitions[p].Count; });

    /// <summary>The partition a partition key maps to (stable within the emulator; the service's hash is its own).</summary>
    public int PartitionOf(string partitionKey)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(partitionKey));
        return (int)(BitConverter.ToUInt32(hash, 0) % (uint)_partitions.Length);
    }

    private void Store(Message message, int? linkPartition, DateTimeOffset now)
    {
        var envelopeKey = message.MessageAnnotations?[PartitionKeyAnnotation] as string;
        Interlocked.Increment(ref _transfers);
        if (message.Format == BatchFormat) Interlocked.Increment(ref _batchTransfers);
        var events = message.Format == BatchFormat ? Unbatch(message) : [message];
        if (events.Count == 0) throw new AmqpException(ErrorCode.DecodeError, "batch without events");
        var key = events[0].MessageAnnotations?[PartitionKeyAnnotation] as string ?? envelopeKey;
        if (linkPartition is not null && key is not null)
            throw new AmqpException(ErrorCode.InvalidField, "a partition key cannot be used on a partition link");
        // Checked before anything is stored: a refused batch leaves no part of itself behind.
        if (events.Any(item => !string.Equals(item.MessageAnnotations?[PartitionKeyAnnotation] as string ?? envelopeKey, key, StringComparison.Ordinal)))
            throw new AmqpException(ErrorCode.InvalidField, "events of one batch must share the partition key");
        var converted = events.Select(item => (Item: item, Body: Body(item))).ToList();
        var partition = linkPartition ?? (key is null ? (int)((uint)Interlocked.Increment(ref _roundRobin) % (uint)_partitions.Length) : PartitionOf(key));
        var stored = _partitions[partition];
        lock (stored)
        {
            foreach (var (item, body) in converted)
            {
                stored.Add(new EmulatedEvent(partition, stored.Count, key, body, item.Properties?.MessageId,
                    item.Properties?.ContentType?.ToString(), ApplicationProperties(item), now));
            }
        }
    }

    private static List<Message> Unbatch(Message batch)
    {
        var sections = batch.BodySection switch
        {
            Data data => [data],
            DataList list => Enumerable.Range(0, list.Count).Select(i => list[i]).ToList(),
            _ => throw new AmqpException(ErrorCode.DecodeError, "a batch message must carry data sections"),
        };
        return [.. sections.Select(d => Message.Decode(new ByteBuffer(d.Binary, 0, d.Binary.Length, d.Binary.Length)))];
    }

    private static byte[] Body(Message message) => message.BodySection switch
    {
        Data data => data.Binary,
        DataList list => [.. Enumerable.Range(0, list.Count).SelectMany(i => list[i].Binary)],
        null => [],
        _ => throw new AmqpException(ErrorCode.DecodeError, $"event body {message.BodySection.GetType().Name} is not binary data"),
    };

    private static IReadOnlyDictionary<string, object?> ApplicationProperties(Message message)
    {
        var result = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (message.ApplicationProperties is { } properties)
            foreach (var key in properties.Map.Keys) result[key.ToString()!] = properties.Map[key];
        return result;
    }

    /// <summary>Checks a SharedAccessSignature token against the key; returns why it is refused, or null.</summary>
    private string? CheckToken(string? token, string? audience, DateTimeOffset now)
    {
        const string Prefix = "SharedAccessSignature ";
        if (token is null || !token.StartsWith(Prefix, StringComparison.Ordinal)) return "not a SharedAccessSignature token";
        var fields = token[Prefix.Length..].Split('&').Select(p => p.Split('=', 2)).Where(p => p.Length == 2)
            .ToDictionary(p => p[0], p => Uri.UnescapeDataString(p[1]), StringComparer.Ordinal);
        if (!fields.TryGetValue("sr", out var resource) || !fields.TryGetValue("sig", out var signature)
            || !fields.TryGetValue("se", out var expiry) || !fields.TryGetValue("skn", out var keyName))
            return "token lacks sr, sig, se or skn";
        if (keyName != KeyName) return $"unknown key name {keyName}";
        if (!long.TryParse(expiry, out var expiresAt) || DateTimeOffset.FromUnixTimeSeconds(expiresAt) <= now) return "token expired";
        using var hmac = new HMACSHA256(Encoding.UTF8.GetBytes(_key));
        var expected = Convert.ToBase64String(hmac.ComputeHash(Encoding.UTF8.GetBytes(Uri.EscapeDataString(resource) + "\n" + expiry)));
        if (!CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(signature)))
            return "signature does not match the key";
        // The SDK signs "amqps://host/hub" even on the emulator's plain AMQP: compare host and path, not the scheme.
        if (audience is not null && !(HostAndPath(audience) is { } wanted && HostAndPath(resource) is { } granted
            && (wanted.Equals(granted, StringComparison.OrdinalIgnoreCase) || wanted.StartsWith(granted + "/", StringComparison.OrdinalIgnoreCase))))
            return $"token for {resource} does not cover {audience}";
        return null;
    }

    /// <summary>The audiences a connection holds tokens for; the connection is remembered until it closes.</summary>
    private ConcurrentDictionary<string, DateTimeOffset> Track(ListenerConnection connection)
    {
        var added = false;
        var audiences = _tokens.GetOrAdd(connection, _ =>
        {
            added = true;
            return new ConcurrentDictionary<string, DateTimeOffset>(StringComparer.OrdinalIgnoreCase);
        });
        if (added) connection.AddClosedCallback((closed, error) => _tokens.TryRemove((ListenerConnection)closed, out _));
        return audiences;
    }

    private static string? HostAndPath(string address) =>
        Uri.TryCreate(address, UriKind.Absolute, out var uri) ? uri.Host + uri.AbsolutePath.TrimEnd('/') : null;

    private bool Authorized(ListenerConnection connection, string entity, DateTimeOffset now) =>
        _tokens.TryGetValue(connection, out var audiences)
        && audiences.Any(a => a.Value > now && EntityOf(a.Key) is { } path
            && (entity.Equals(path, StringComparison.OrdinalIgnoreCase) || entity.StartsWith(path + "/", StringComparison.OrdinalIgnoreCase)));

    // "amqp://host:port/hub" or "sb://host/hub/Partitions/0" → "hub…"
    private static string? EntityOf(string audience) =>
        Uri.TryCreate(audience, UriKind.Absolute, out var uri) ? uri.AbsolutePath.Trim('/') : null;

    private static Message Response(Message request, int status, string description, object? body = null) => new()
    {
        Properties = new Properties { CorrelationId = request.Properties?.MessageId },
        ApplicationProperties = new ApplicationProperties { ["status-code"] = status, ["status-description"] = description },
        BodySection = new AmqpValue { Value = body },
    };

    /// <summary>SASL "MSSBCBS": the client authenticates later with put-token on $cbs, so the handshake itself succeeds.</summary>
    private sealed class ClaimsBasedSecurityMechanism() : Amqp.Sasl.SaslProfile(Name)
    {
        public static readonly Symbol Name = new("MSSBCBS");

        protected override ITransport UpgradeTransport(ITransport transport) => transport;

        protected override DescribedList GetStartCommand(string hostname) => throw new NotSupportedException("server side only");

        protected override DescribedList OnCommand(DescribedList command) => command is Amqp.Sasl.SaslInit
            ? new Amqp.Sasl.SaslOutcome { Code = Amqp.Sasl.SaslCode.Ok }
            : throw new AmqpException(ErrorCode.NotAllowed, command.ToString());
    }

    /// <summary>Per accepted connection: remembers it (to close it on stop) and puts max-message-size on attaches.</summary>
    private sealed class ConnectionEvents(EventHubsEmulator emulator) : IHandler
    {
        public bool CanHandle(EventId id) => id is EventId.ConnectionAccept or EventId.LinkLocalOpen;

        public void Handle(Event protocolEvent)
        {
            if (protocolEvent.Id == EventId.ConnectionAccept && protocolEvent.Context is ListenerConnection connection)
            {
                emulator.Track(connection);
                Interlocked.Increment(ref emulator._connectionsAccepted);
            }
            else if (protocolEvent.Id == EventId.LinkLocalOpen && protocolEvent.Context is Attach attach)
            {
                attach.MaxMessageSize = (ulong)MaxMessageSize;
            }
        }
    }

    private sealed class ClaimsProcessor(EventHubsEmulator emulator) : IRequestProcessor
    {
        public int Credit => 100;

        public void Process(RequestContext context)
        {
            var request = context.Message;
            var operation = request.ApplicationProperties?["operation"] as string;
            var audience = request.ApplicationProperties?["name"] as string;
            if (operation != "put-token")
            {
                context.Complete(Response(request, 400, $"unsupported $cbs operation '{operation}'"));
                return;
            }
            var now = DateTimeOffset.UtcNow;
            var refused = audience is null
                ? $"no audience (name) in the request; properties: {string.Join(", ", (IEnumerable<object>?)request.ApplicationProperties?.Map.Keys ?? [])}"
                : emulator.CheckToken(request.Body as string, audience, now);
            if (refused is null)
            {
                emulator.Track((ListenerConnection)context.Link.Session.Connection)[audience!] = now.AddHours(1);
                context.Complete(Response(request, 202, "Accepted"));
                return;
            }
            Interlocked.Increment(ref emulator._refusedTokens);
            context.Complete(Response(request, 401, refused));
        }
    }

    private sealed class ManagementProcessor(EventHubsEmulator emulator) : IRequestProcessor
    {
        public int Credit => 100;

        public void Process(RequestContext context)
        {
            var request = context.Message;
            var properties = request.ApplicationProperties;
            var now = DateTimeOffset.UtcNow;
            if (emulator.CheckToken(properties?["security_token"] as string, null, now) is { } refused)
            {
                Interlocked.Increment(ref emulator._refusedTokens);
                context.Complete(Response(request, 401, refused));
                return;
            }
            if (properties?["operation"] as string != "READ" || properties["name"] as string != emulator.HubName)
            {
                context.Complete(Response(request, 404, $"no {properties?["type"]} '{properties?["name"]}' here"));
                return;
            }
            switch (properties["type"] as string)
            {
                case "com.microsoft:eventhub":
                    context.Complete(Response(request, 200, "OK", new Map
                    {
                        ["name"] = emulator.HubName,
                        ["created_at"] = emulator._createdAt.UtcDateTime,
                        ["partition_count"] = emulator.PartitionCount,
                        ["partition_ids"] = Enumerable.Range(0, emulator.PartitionCount).Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(),
                    }));
                    return;
                case "com.microsoft:partition" when int.TryParse(properties["partition"] as string, out var partition) && partition >= 0 && partition < emulator.PartitionCount:
                    var events = emulator.Partition(partition);
                    var last = events.Count > 0 ? events[^1] : null;
                    context.Complete(Response(request, 200, "OK", new Map
                    {
                        ["name"] = emulator.HubName,
                        ["partition"] = partition.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        ["begin_sequence_number"] = 0L,
                        ["last_enqueued_sequence_number"] = last?.SequenceNumber ?? -1L,
                        ["last_enqueued_offset"] = (last?.SequenceNumber ?? -1L).ToString(System.Globalization.CultureInfo.InvariantCulture),
                        ["last_enqueued_time_utc"] = (last?.EnqueuedAt ?? emulator._createdAt).UtcDateTime,
                        ["is_partition_empty"] = last is null,
                    }));
                    return;
                default:
                    context.Complete(Response(request, 404, $"no {properties["type"]} '{properties["partition"]}' here"));
                    return;
            }
        }
    }

    /// <summary>Sending links to the hub or one of its partitions; anything else is refused.</summary>
    private sealed class HubLinkProcessor(EventHubsEmulator emulator) : ILinkProcessor
    {
        public void Process(AttachContext attachContext)
        {
            var attach = attachContext.Attach;
            // Role true on the listener's link: the client sends.
            if (!attachContext.Link.Role || attach.Target is not Target { Address: { } address })
            {
                Refuse(attachContext, ErrorCode.NotImplemented, "the emulator only accepts sending links");
                return;
            }
            int? partition = null;
            // The SDK's target is the entity's path ("/hub", "/hub/Partitions/0"); an absolute address names it too.
            var entity = (Uri.TryCreate(address, UriKind.Absolute, out var uri) ? uri.AbsolutePath : address).Trim('/');
            var parts = entity.Split('/');
            if (!parts[0].Equals(emulator.HubName, StringComparison.OrdinalIgnoreCase)
                || parts.Length is not (1 or 3)
                || (parts.Length == 3 && (!parts[1].Equals("Partitions", StringComparison.OrdinalIgnoreCase)
                    || !int.TryParse(parts[2], out var p) || p < 0 || p >= emulator.PartitionCount || (partition = p) is null)))
            {
                Refuse(attachContext, ErrorCode.NotFound, $"no entity '{address}' here");
                return;
            }
            if (!emulator.Authorized((ListenerConnection)attachContext.Link.Session.Connection, entity, DateTimeOffset.UtcNow))
            {
                Refuse(attachContext, ErrorCode.UnauthorizedAccess, $"no valid token put on $cbs for '{address}'");
                return;
            }
            attachContext.Complete(new TargetLinkEndpoint(new HubWriter(emulator, partition), attachContext.Link), 300);
        }

        private void Refuse(AttachContext context, string condition, string description)
        {
            Interlocked.Increment(ref emulator._refusedLinks);
            context.Complete(new Error(condition) { Description = description });
        }
    }

    private sealed class HubWriter(EventHubsEmulator emulator, int? partition) : IMessageProcessor
    {
        public int Credit => 300;

        public void Process(MessageContext messageContext)
        {
            try
            {
                emulator.Store(messageContext.Message, partition, DateTimeOffset.UtcNow);
                messageContext.Complete();
            }
            catch (AmqpException e)
            {
                messageContext.Complete(e.Error);
            }
        }
    }
}

/// <summary>One event as the emulated hub stored it.</summary>
/// <param name="Partition">The partition it went to.</param>
/// <param name="SequenceNumber">Its sequence number in the partition (0, 1, …).</param>
/// <param name="PartitionKey">The x-opt-partition-key annotation, if any.</param>
/// <param name="Body">The event's body bytes.</param>
/// <param name="MessageId">The AMQP message id the producer set.</param>
/// <param name="ContentType">The AMQP content type the producer set.</param>
/// <param name="Properties">The application properties.</param>
/// <param name="EnqueuedAt">When the emulator stored it.</param>
public sealed record EmulatedEvent(
    int Partition,
    long SequenceNumber,
    string? PartitionKey,
    byte[] Body,
    object? MessageId,
    string? ContentType,
    IReadOnlyDictionary<string, object?> Properties,
    DateTimeOffset EnqueuedAt);
