namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>Settings of the Event Hubs sink: section "Telemetry:EventHubs". The sink is off without a connection string.</summary>
public sealed class EventHubsOptions
{
    public const string Section = "Telemetry:EventHubs";

    /// <summary>Event Hubs connection string (see <see cref="EventHubsConnectionString"/>); null or empty turns the sink off.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>The hub's name when the connection string is a namespace-level one without EntityPath.</summary>
    public string? EntityPath { get; set; }

    /// <summary>Events held in memory while the hub is slow or unreachable; beyond this new events are dropped (and counted).</summary>
    public int QueueCapacity { get; set; } = 10_000;

    /// <summary>Events sent together (pipelined on one link) before waiting for their outcomes.</summary>
    public int MaxBatchSize { get; set; } = 128;

    /// <summary>First wait after a failed connect or send; doubled per failure up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan InitialRetryDelay { get; set; } = TimeSpan.FromMilliseconds(250);

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long one send waits for the hub's outcome.</summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>On shutdown, queued events are still sent for at most this long.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often each federation's status goes to the hub as fleet telemetry; zero turns that off.</summary>
    public TimeSpan StatusInterval { get; set; } = TimeSpan.FromMinutes(1);

    public bool Enabled => !string.IsNullOrWhiteSpace(ConnectionString);

    /// <summary>Throws naming the bad setting.</summary>
    public EventHubsConnectionString Validate()
    {
        var parsed = EventHubsConnectionString.Parse(ConnectionString ?? "", EntityPath);
        if (QueueCapacity < 1) throw new ArgumentException($"{Section}:QueueCapacity must be ≥ 1 (got {QueueCapacity})");
        if (MaxBatchSize < 1) throw new ArgumentException($"{Section}:MaxBatchSize must be ≥ 1 (got {MaxBatchSize})");
        if (InitialRetryDelay <= TimeSpan.Zero || MaxRetryDelay < InitialRetryDelay)
            throw new ArgumentException($"{Section}: need 0 < InitialRetryDelay ≤ MaxRetryDelay (got {InitialRetryDelay}, {MaxRetryDelay})");
        if (StatusInterval < TimeSpan.Zero) throw new ArgumentException($"{Section}:StatusInterval must not be negative (got {StatusInterval})");
        if (SendTimeout <= TimeSpan.Zero) throw new ArgumentException($"{Section}:SendTimeout must be positive (got {SendTimeout})");
        return parsed;
    }
}

/// <summary>One event for the hub: a JSON body, the partition key (events with one key keep their order) and its type.</summary>
/// <param name="PartitionKey">Sent as the <c>x-opt-partition-key</c> message annotation (at most 128 characters).</param>
/// <param name="Body">UTF-8 JSON, sent as one AMQP data section with content type application/json.</param>
/// <param name="Type">Application property <c>fededge-type</c>, e.g. "drift-event", so consumers can route without parsing.</param>
/// <param name="MessageId">AMQP message id, lets consumers drop duplicates of an at-least-once delivery.</param>
public sealed record EventHubsEvent(string PartitionKey, ReadOnlyMemory<byte> Body, string Type, string? MessageId = null)
{
    public const int MaxPartitionKeyLength = 128;
}
