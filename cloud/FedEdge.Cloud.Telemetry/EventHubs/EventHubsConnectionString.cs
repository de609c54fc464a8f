namespace FedEdge.Cloud.Telemetry.EventHubs;

/// <summary>
/// The parts of an Azure Event Hubs connection string
/// (<c>Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=hub</c>)
/// that an AMQP 1.0 sender needs. <c>UseDevelopmentEmulator=true</c> selects plain AMQP (port 5672) instead of
/// AMQPS (5671), as for the Event Hubs emulator and for tests against a local AMQP 1.0 broker.
/// </summary>
public sealed record EventHubsConnectionString
{
    public const int TlsPort = 5671;
    public const int PlainPort = 5672;

    /// <summary>Host of the namespace, e.g. <c>ns.servicebus.windows.net</c>.</summary>
    public required string Host { get; init; }

    /// <summary>Port from the endpoint, or the AMQP(S) default.</summary>
    public required int Port { get; init; }

    /// <summary>The SAS policy name, sent as the SASL PLAIN user name.</summary>
    public required string SharedAccessKeyName { get; init; }

    /// <summary>The SAS key, sent as the SASL PLAIN password.</summary>
    public required string SharedAccessKey { get; init; }

    /// <summary>The event hub's name: the AMQP target address.</summary>
    public required string EntityPath { get; init; }

    /// <summary>False for <c>UseDevelopmentEmulator=true</c>: plain AMQP without TLS.</summary>
    public required bool UseTls { get; init; }

    /// <summary>Parses a connection string; the exception names the part that is missing or malformed (never the key).</summary>
    /// <param name="connectionString">The connection string.</param>
    /// <param name="entityPath">The hub's name when the connection string (a namespace-level one) has no EntityPath.</param>
    public static EventHubsConnectionString Parse(string connectionString, string? entityPath = null)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new FormatException("Event Hubs connection string is empty");
        var parts = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var segment in connectionString.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var equals = segment.IndexOf('=');
            if (equals <= 0)
                throw new FormatException($"Event Hubs connection string: segment '{Describe(segment)}' is not Key=Value");
            var name = segment[..equals].Trim();
            if (!parts.TryAdd(name, segment[(equals + 1)..].Trim()))
                throw new FormatException($"Event Hubs connection string: '{name}' appears more than once");
        }

        var endpoint = Required(parts, "Endpoint");
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("sb" or "amqp" or "amqps") || string.IsNullOrEmpty(uri.Host))
            throw new FormatException($"Event Hubs connection string: Endpoint '{endpoint}' is not an sb://host/ address");
        var emulator = parts.TryGetValue("UseDevelopmentEmulator", out var flag) && ParseBool(flag, "UseDevelopmentEmulator");
        var useTls = !emulator && uri.Scheme != "amqp";
        var keyName = Required(parts, "SharedAccessKeyName");
        var sharedKey = Required(parts, "SharedAccessKey");
        if (parts.ContainsKey("SharedAccessSignature"))
            throw new FormatException("Event Hubs connection string: SharedAccessSignature tokens are not supported; use SharedAccessKeyName and SharedAccessKey");
        var hub = parts.TryGetValue("EntityPath", out var path) && path.Length > 0 ? path : entityPath;
        if (string.IsNullOrWhiteSpace(hub))
            throw new FormatException("Event Hubs connection string: EntityPath (the event hub's name) is missing and no hub name was configured");
        if (entityPath is { Length: > 0 } && !string.Equals(entityPath, hub, StringComparison.Ordinal))
            throw new FormatException($"Event Hubs connection string: EntityPath '{hub}' differs from the configured hub name '{entityPath}'");
        if (hub.Contains('/') || hub.Any(char.IsWhiteSpace))
            throw new FormatException($"Event Hubs connection string: EntityPath '{hub}' is not a hub name");

        return new EventHubsConnectionString
        {
            Host = uri.Host,
            Port = uri.IsDefaultPort || uri.Port <= 0 ? (useTls ? TlsPort : PlainPort) : uri.Port,
            SharedAccessKeyName = keyName,
            SharedAccessKey = sharedKey,
            EntityPath = hub,
            UseTls = useTls,
        };
    }

    /// <summary>Endpoint and hub for logs; the key is left out.</summary>
    public override string ToString() => $"{(UseTls ? "amqps" : "amqp")}://{Host}:{Port}/{EntityPath} as {SharedAccessKeyName}";

    private static string Required(Dictionary<string, string> parts, string key) =>
        parts.TryGetValue(key, out var value) && value.Length > 0
            ? value
            : throw new FormatException($"Event Hubs connection string: {key} is missing");

    private static bool ParseBool(string value, string key) =>
        bool.TryParse(value, out var result) ? result : throw new FormatException($"Event Hubs connection string: {key} '{value}' is not true or false");

    // A malformed segment might be a mangled key: show only its start.
    private static string Describe(string segment) => segment.Length <= 12 ? segment : segment[..12] + "…";
}
