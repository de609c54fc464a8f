using FedEdge.Cloud.Broker;

namespace FedEdge.Cloud;

/// <summary>Where grain state lives.</summary>
public enum StateStorageKind
{
    /// <summary>Embedded SQLite file in the data directory; single silo, no server needed.</summary>
    Sqlite,

    /// <summary>Orleans' Redis grain storage; for multi-silo deployments.</summary>
    Redis,
}

/// <summary>How silos find each other.</summary>
public enum ClusteringKind
{
    /// <summary>One silo on this machine.</summary>
    Localhost,

    /// <summary>Orleans' Redis membership table; for multi-silo deployments.</summary>
    Redis,
}

/// <summary>
/// The cloud service's settings: section "Cloud" of appsettings.json, environment variables
/// (<c>FEDEDGE_Cloud__BrokerPort=…</c>) and command-line flags.
/// </summary>
public sealed class CloudOptions
{
    public const string Section = "Cloud";

    /// <summary>Registry, grain state, model store and keys live here.</summary>
    public string DataDirectory { get; set; } = "fededge-data";

    /// <summary>"embedded" (default) hosts an MQTTnet broker in-process; "mqtt://host:port" or "mqtts://host:port" (TLS,
    /// trusting <see cref="BrokerTlsOptions.CaFile"/>) uses an external one.</summary>
    public string Broker { get; set; } = "embedded";

    /// <summary>Port of the embedded broker (0 = pick a free one; the chosen port is then in <c>EmbeddedBroker.Port</c>).</summary>
    public int BrokerPort { get; set; } = 1883;

    /// <summary>Addresses the embedded broker's plain-TCP listener binds (<see cref="ListenAddresses"/>: "127.0.0.1",
    /// "::1", "0.0.0.0,::"); anything but loopback needs <see cref="AllowPlaintextOnNonLoopback"/>. Devices on other
    /// machines use the TLS listener (<see cref="Tls"/>).</summary>
    public string BrokerBindAddress { get; set; } = "127.0.0.1";

    /// <summary>The cloud's MQTT user name.</summary>
    public string ServiceUserName { get; set; } = Security.ServiceIdentity.DefaultUserName;

    /// <summary>The cloud's MQTT password for an external broker; default: generated into the data directory.</summary>
    public string? ServicePassword { get; set; }

    public StateStorageKind Storage { get; set; } = StateStorageKind.Sqlite;

    public ClusteringKind Clustering { get; set; } = ClusteringKind.Localhost;

    /// <summary>StackExchange.Redis configuration string, needed only when Storage or Clustering is Redis.</summary>
    public string? RedisConnectionString { get; set; }

    public int SiloPort { get; set; } = 11111;

    public int GatewayPort { get; set; } = 30000;

    public string ClusterId { get; set; } = "fededge";

    public string ServiceId { get; set; } = "fededge";

    /// <summary>Updates larger than this (the MQTT payload) are rejected as Oversized.</summary>
    public int MaxUpdateBytes { get; set; } = 64 << 20;

    /// <summary>What an update envelope may hold besides its payload. With the model's dimension it bounds the size a
    /// chunked update may announce (<see cref="FedEdge.Protocol.UpdateEnvelopeLimits"/>), below <see cref="MaxUpdateBytes"/>.</summary>
    public int MaxEnvelopeMetadataBytes { get; set; } = FedEdge.Protocol.UpdateEnvelopeLimits.DefaultMetadataBytes;

    /// <summary>Memory of all incomplete chunked updates together, charged as chunks arrive.</summary>
    public long ReassemblyBudgetBytes { get; set; } = 512L << 20;

    /// <summary>One device's share of <see cref="ReassemblyBudgetBytes"/>; beyond it its chunks are refused (retryable)
    /// and nobody else is affected.</summary>
    public long ReassemblyShareBytes { get; set; } = 128L << 20;

    /// <summary>
    /// Updates processed concurrently by the ingestion bridge (each waits mostly for its storage commit, and
    /// concurrent ones share a commit). Also bounds the memory of updates in flight: this many × d floats.
    /// </summary>
    public int IngestionConcurrency { get; set; } = 64;

    /// <summary>Global models are published in chunks of this many bytes.</summary>
    /// <remarks>64 KiB by default: over the embedded MQTTnet broker on loopback, a 256 KiB retained chunk took
    /// 45–180 ms to publish where a 64 KiB one took under 1 ms (`fededge bench e2e`, d = 100k model in 2 vs 7 chunks).</remarks>
    public int ModelChunkBytes { get; set; } = 64 << 10;

    /// <summary>SQLite synchronous=FULL and the update log flushed to disk: an acknowledged update survives power loss, not only a crash.</summary>
    public bool SqliteSynchronousFull { get; set; } = true;

    /// <summary>
    /// Federations to start when the cloud starts (if not started before), by name: section
    /// "Cloud:Federations:{name}" holds the <see cref="Abstractions.FederationConfig"/> fields and the initial model.
    /// </summary>
    public Dictionary<string, FederationStartOptions> Federations { get; set; } = [];

    // --- TLS (issue 15) ---

    /// <summary>The embedded broker's TLS listener, device client certificates, and the CA pinned for an external broker.</summary>
    public BrokerTlsOptions Tls { get; set; } = new();

    /// <summary>Lets the plain-TCP listener bind a non-loopback address (passwords and updates then cross the network in clear).</summary>
    public bool AllowPlaintextOnNonLoopback { get; set; }

    /// <summary>TLS between silos and to the Orleans gateway (cluster mode), <see cref="Hosting.SiloTlsOptions"/>.</summary>
    public Hosting.SiloTlsOptions SiloTls { get; set; } = new();

    /// <summary>True when <see cref="Broker"/> is an external broker reached over TLS (mqtts://, ssl://).</summary>
    public bool ExternalBrokerUsesTls =>
        !UsesEmbeddedBroker && Uri.TryCreate(Broker, UriKind.Absolute, out var uri) && uri.Scheme is "mqtts" or "ssl";

    // --- end TLS ---

    // ---- Bounds before allocation, rate limits, login cost (docs/security.md "Bounds and rates") ----

    /// <summary>Largest update frame a device sends (the agents' <c>Compression:MaxFrameBytes</c> must not exceed it). With
    /// <see cref="ModelChunkBytes"/> it sizes the largest MQTT packet the embedded broker reads (<see cref="MaxMqttPacketBytes"/>).</summary>
    public int MaxDeviceFrameBytes { get; set; } = FedEdge.Protocol.UpdateFramer.DefaultMaxFrameBytes;

    /// <summary>Largest first packet (CONNECT, with its will) the embedded broker reads from a connection not yet logged in.</summary>
    public int MaxConnectPacketBytes { get; set; } = 64 << 10;

    /// <summary>What an MQTT packet adds around a frame or a model chunk (fixed header, topic, properties, the protobuf
    /// fields around a chunk's data), generously.</summary>
    public const int MqttPacketOverheadBytes = 16 << 10;

    /// <summary>The largest MQTT packet the embedded broker reads: the largest legitimate frame (a device's update frame or
    /// the cloud's model chunk) plus <see cref="MqttPacketOverheadBytes"/>. A larger announced length closes the
    /// connection before its body is read.</summary>
    public int MaxMqttPacketBytes => Math.Max(MaxDeviceFrameBytes, ModelChunkBytes) + MqttPacketOverheadBytes;

    /// <summary>Open connections to the embedded broker from one source address (devices behind one NAT share one).</summary>
    public int MaxConnectionsPerAddress { get; set; } = 1000;

    /// <summary>Refusals are counted per device (or address) and reason and written as one log line per interval.</summary>
    public TimeSpan RejectionLogInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Update frames one device may have processed: sustained rate and burst (an honest device sends one update
    /// per round, in ≤ 256 chunks for the largest model; beyond the burst its frames get a retryable QuotaExceeded).</summary>
    public double DeviceFramesPerSecond { get; set; } = 100;
    public int DeviceFrameBurst { get; set; } = 1000;

    /// <summary>Refused update frames one device may cause: once spent, its frames are refused unread (retryable) until refilled.</summary>
    public double DeviceRejectedFramesPerSecond { get; set; } = 1;
    public int DeviceRejectedFrameBurst { get; set; } = 100;

    /// <summary>Status changes applied per device; beyond the burst only the latest is kept and applied when the rate allows.</summary>
    public double DeviceStatusPerSecond { get; set; } = 0.1;
    public int DeviceStatusBurst { get; set; } = 10;

    /// <summary>Failed logins tolerated per user name and per source address before logins under it (from it) are refused
    /// unhashed; one more is allowed every <see cref="LoginFailureRefill"/> (<c>LoginThrottle</c>).</summary>
    public int LoginFailureBurstPerName { get; set; } = 5;
    public int LoginFailureBurstPerAddress { get; set; } = 10;
    public TimeSpan LoginFailureRefill { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>PBKDF2 password checks run at once (on the thread pool, not on the broker's connection threads).</summary>
    public int LoginHashConcurrency { get; set; } = Math.Max(1, Environment.ProcessorCount / 2);

    public bool UsesEmbeddedBroker => string.Equals(Broker, "embedded", StringComparison.OrdinalIgnoreCase);

    /// <summary>Host and port of an external broker given as mqtt://host:port or mqtts://host:port (default ports 1883, 8883).</summary>
    public (string Host, int Port) ExternalBrokerEndpoint()
    {
        if (!Uri.TryCreate(Broker, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "tcp" or "mqtts" or "ssl"))
            throw new ArgumentException($"Broker '{Broker}' is neither 'embedded' nor an mqtt://host:port or mqtts://host:port address", nameof(Broker));
        var tls = uri.Scheme is "mqtts" or "ssl";
        return (uri.Host, uri.IsDefaultPort || uri.Port < 0 ? (tls ? 8883 : 1883) : uri.Port);
    }

    /// <summary>
    /// Binds everything to loopback on free ports (the broker on the one <paramref name="brokerPort"/> names, 0 = any):
    /// the single-machine setting of the simulator, the benchmarks and the tests.
    /// </summary>
    public CloudOptions UseLoopback(int brokerPort = 0)
    {
        BrokerPort = brokerPort;
        BrokerBindAddress = "127.0.0.1";
        SiloPort = FreeTcpPort.Find();
        GatewayPort = FreeTcpPort.Find();
        return this;
    }
}

/// <summary>A federation declared in configuration: its configuration and where its initial model comes from.</summary>
public sealed class FederationStartOptions
{
    public Abstractions.FederationConfig Config { get; set; } = new();

    /// <summary>ONNX file of the initial model; when empty the zoo model named by <c>Config.Model</c> is built.</summary>
    public string? ModelFile { get; set; }

    /// <summary>Shape of one sample for a zoo model (Fashion-MNIST: 1, 28, 28).</summary>
    public int[] SampleShape { get; set; } = [1, 28, 28];

    public int Classes { get; set; } = 10;

    /// <summary>The initial model's ONNX bytes.</summary>
    public byte[] InitialModel() =>
        string.IsNullOrEmpty(ModelFile)
            ? Google.Protobuf.MessageExtensions.ToByteArray(Training.Zoo.ModelZoo.Create(Config.Model, SampleShape, Classes, Config.Seed))
            : File.ReadAllBytes(ModelFile);
}

/// <summary>The files of a data directory.</summary>
public sealed class CloudDataDirectory(string root)
{
    public string Root { get; } = Path.GetFullPath(root);
    public string RegistryDatabase => Path.Combine(Root, "registry.db");
    public string StateDatabase => Path.Combine(Root, "state.db");
    /// <summary>The update log's segments (<see cref="Storage.FileUpdateLog"/>), next to the SQLite state.</summary>
    public string UpdateLog => Path.Combine(Root, "update-log");
    /// <summary>Chunks of incomplete updates acknowledged to an external broker (<c>ChunkSpool</c>).</summary>
    public string ChunkSpool => Path.Combine(Root, "chunk-spool");
    public string ModelStore => Path.Combine(Root, "models");
    public string CloudSigningKey => Path.Combine(Root, "cloud-signing.key");
    public string ServiceCredentials => Path.Combine(Root, "service-credentials.json");
}
