namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>Settings of the Event Hubs sink: section "Telemetry:EventHubs". The sink is off without a connection string.</summary>
public sealed class EventHubsOptions
{
    public const string Section = "Telemetry:EventHubs";

    /// <summary>Event Hubs connection string (see <see cref="EventHubsConnectionString"/>); null or empty turns the sink off.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>The hub's name when the connection string is a namespace-level one without EntityPath.</summary>
    public string? EntityPath { get; set; }

    /// <summary>
    /// Where the durable backlog of unconfirmed events lives; the cloud sets it to <c>eventhubs-backlog</c> in its
    /// data directory when unset.
    /// </summary>
    public string? BacklogDirectory { get; set; }

    /// <summary>Bytes the backlog may hold (records with their headers); beyond this new events are refused (and counted).</summary>
    public long BacklogCapacityBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>Events the backlog may hold; beyond this new events are refused (and counted).</summary>
    public int QueueCapacity { get; set; } = 100_000;

    /// <summary>Size of one backlog segment file; whole segments are deleted once the hub confirmed them.</summary>
    public long BacklogSegmentBytes { get; set; } = 4L * 1024 * 1024;

    /// <summary>Largest event body accepted (the hub refuses messages over its tier's limit: 256 KB basic, 1 MB standard).</summary>
    public int MaxEventBytes { get; set; } = 192 * 1024;

    /// <summary>Events sent in one <c>EventDataBatch</c> at most (the batch is also bounded by the hub's message size).</summary>
    public int MaxBatchSize { get; set; } = 128;

    /// <summary>The SDK's retries of one send (exponential, from <see cref="InitialRetryDelay"/>) before the sink backs off itself.</summary>
    public int MaxRetries { get; set; } = 3;

    /// <summary>First wait after a failed send; doubled per failure up to <see cref="MaxRetryDelay"/> (the SDK's and the sink's).</summary>
    public TimeSpan InitialRetryDelay { get; set; } = TimeSpan.FromMilliseconds(250);

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long one try of a send (or of opening the connection) may take: the SDK's TryTimeout.</summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>On shutdown, pending events are still sent for at most this long; the rest stay in the backlog.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often each federation's status goes to the hub as fleet telemetry; zero turns that off.</summary>
    public TimeSpan StatusInterval { get; set; } = TimeSpan.FromMinutes(1);

    public bool Enabled => !string.IsNullOrWhiteSpace(ConnectionString);

    /// <summary>Throws naming the bad setting.</summary>
    public EventHubsConnectionString Validate()
    {
        var parsed = EventHubsConnectionString.Parse(ConnectionString ?? "", EntityPath);
        try
        {
            // The SDK's own parse too, so that a string it would refuse fails at start-up, not at the first send.
            Azure.Messaging.EventHubs.EventHubsConnectionStringProperties.Parse(ConnectionString!);
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            throw new FormatException($"Event Hubs connection string: the Azure SDK refuses it ({e.Message})", e);
        }
        if (string.IsNullOrWhiteSpace(BacklogDirectory)) throw new ArgumentException($"{Section}:BacklogDirectory is not set");
        if (QueueCapacity < 1) throw new ArgumentException($"{Section}:QueueCapacity must be ≥ 1 (got {QueueCapacity})");
        if (MaxEventBytes < 1) throw new ArgumentException($"{Section}:MaxEventBytes must be ≥ 1 (got {MaxEventBytes})");
        if (BacklogSegmentBytes < 4096) throw new ArgumentException($"{Section}:BacklogSegmentBytes must be ≥ 4096 (got {BacklogSegmentBytes})");
        if (BacklogCapacityBytes < MaxEventBytes + 1024)
            throw new ArgumentException($"{Section}:BacklogCapacityBytes must hold at least one event of MaxEventBytes (got {BacklogCapacityBytes} < {MaxEventBytes} + 1024)");
        if (MaxBatchSize < 1) throw new ArgumentException($"{Section}:MaxBatchSize must be ≥ 1 (got {MaxBatchSize})");
        if (MaxRetries is < 0 or > 100) throw new ArgumentException($"{Section}:MaxRetries must be 0–100 (got {MaxRetries})");
        if (InitialRetryDelay <= TimeSpan.Zero || MaxRetryDelay < InitialRetryDelay)
            throw new ArgumentException($"{Section}: need 0 < InitialRetryDelay ≤ MaxRetryDelay (got {InitialRetryDelay}, {MaxRetryDelay})");
        if (StatusInterval < TimeSpan.Zero) throw new ArgumentException($"{Section}:StatusInterval must not be negative (got {StatusInterval})");
        if (SendTimeout <= TimeSpan.Zero) throw new ArgumentException($"{Section}:SendTimeout must be positive (got {SendTimeout})");
        if (DrainTimeout < TimeSpan.Zero) throw new ArgumentException($"{Section}:DrainTimeout must not be negative (got {DrainTimeout})");
        return parsed;
    }
}

/// <summary>One event for the hub: a JSON body, the partition key (events with one key keep their order) and its type.</summary>
/// <param name="PartitionKey">The batch's partition key (at most 128 characters): the device or the federation.</param>
/// <param name="Body">UTF-8 JSON, the event body with content type application/json.</param>
/// <param name="Type">Application property <c>fededge-type</c>, e.g. "drift-event", so consumers can route without parsing.</param>
/// <param name="MessageId">The event's message id; consumers drop duplicates of an at-least-once delivery by it. The sink
/// assigns one when null.</param>
public sealed record EventHubsEvent(string PartitionKey, ReadOnlyMemory<byte> Body, string Type, string? MessageId = null)
{
    public const int MaxPartitionKeyLength = 128;

    /// <summary>When the sink accepted the event (sent as application property <c>fededge-accepted-at</c>).</summary>
    public DateTimeOffset AcceptedAt { get; init; }
}
