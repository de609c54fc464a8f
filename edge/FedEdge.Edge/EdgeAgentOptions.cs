using FedEdge.Training;

namespace FedEdge.Edge;

/// <summary>
/// Everything the edge agent can be told, bound from the <c>Edge</c> configuration section
/// (appsettings.json, then <c>FEDEDGE_Edge__...</c> environment variables, then command-line flags).
/// See edge/FedEdge.Edge/appsettings.edge.json for a documented sample.
/// </summary>
public sealed class EdgeAgentOptions
{
    public const string SectionName = "Edge";

    /// <summary>Device credential file written by <c>fededge devices add</c> (device id, keys, MQTT login).</summary>
    public string? CredentialsPath { get; set; }

    /// <summary>Broker address <c>mqtt://host:port</c>; overrides the one in the credential file.</summary>
    public string? Broker { get; set; }

    /// <summary>Where the agent keeps its outbox, last verified model, error-feedback state and progress.</summary>
    public string StateDirectory { get; set; } = "fededge-state";

    public EdgeDataOptions Data { get; set; } = new();
    public EdgeTrainingOptions Training { get; set; } = new();
    public EdgeCompressionOptions Compression { get; set; } = new();
    public EdgeMqttOptions Mqtt { get; set; } = new();
    public EdgeOutboxOptions Outbox { get; set; } = new();
    public EdgeDriftOptions Drift { get; set; } = new();
}

/// <summary>The device's local data.</summary>
public sealed class EdgeDataOptions
{
    /// <summary><c>DatasetSource</c> spec: <c>fashion-mnist</c>, <c>npy:X.npy,Y.npy[,Xt.npy,Yt.npy]</c>, <c>csv:train.csv[,test.csv]</c>.</summary>
    public string? Source { get; set; }

    /// <summary>Optional: keep only this device's share of the source, <c>iid</c>, <c>dirichlet:0.5</c> or <c>shards:2</c> (demos on one data set).</summary>
    public string? Partition { get; set; }

    /// <summary>This device's index among <see cref="PartitionCount"/> when <see cref="Partition"/> is set.</summary>
    public int PartitionIndex { get; set; }

    public int PartitionCount { get; set; } = 1;

    /// <summary>Seed of the partition (all devices of one demo must use the same).</summary>
    public int PartitionSeed { get; set; }

    /// <summary>Most local test samples used for the accuracy reported with each update (0 = none).</summary>
    public int MaxEvaluationSamples { get; set; } = 1000;

    /// <summary>
    /// Optional: a directory of time windows <c>window-N.X.npy</c> + <c>window-N.Y.npy</c> (optionally
    /// <c>window-N.Xtest.npy</c> + <c>window-N.Ytest.npy</c>) instead of <see cref="Source"/>; the newest complete window
    /// is picked up before each round (see <see cref="Drift.DirectoryDataWindows"/>).
    /// </summary>
    public string? WindowDirectory { get; set; }
}

/// <summary>Local training per round (FedAvg's E epochs of mini-batch SGD).</summary>
public sealed class EdgeTrainingOptions
{
    public int LocalEpochs { get; set; } = 1;
    public int BatchSize { get; set; } = 64;
    public float LearningRate { get; set; } = 0.01f;
    public OptimizerKind Optimizer { get; set; } = OptimizerKind.Sgd;
    public float Momentum { get; set; } = 0.9f;
    public float WeightDecay { get; set; }
    public float ClipNorm { get; set; }

    /// <summary>FedProx μ (0 = plain FedAvg local training).</summary>
    public float ProximalMu { get; set; }

    /// <summary>ONNX Runtime intra-op threads (0 = runtime default).</summary>
    public int Threads { get; set; }

    public ExecutionDevice Device { get; set; } = ExecutionDevice.Cpu;
    public int Seed { get; set; }

    /// <summary>Cap on local steps per round (0 = no cap), to bound round time on slow devices.</summary>
    public int MaxStepsPerRound { get; set; }
}

/// <summary>How updates are compressed.</summary>
public sealed class EdgeCompressionOptions
{
    /// <summary>Codec spec (<c>fp32</c>, <c>fp16</c>, <c>sign</c>, <c>topk:0.01</c>, ...); empty = the cloud's first hint, else fp32.</summary>
    public string? Codec { get; set; }

    /// <summary>Error feedback: <c>none</c>, <c>ef14</c>, <c>ef21</c> or <c>econtrol</c>; must match the federation's.</summary>
    public string ErrorFeedback { get; set; } = "ef14";

    /// <summary>EControl's η.</summary>
    public float EControlEta { get; set; } = 0.1f;

    /// <summary>Largest MQTT message for an update; larger signed envelopes are chunked.</summary>
    public int MaxFrameBytes { get; set; } = 256 * 1024;
}

/// <summary>MQTT session and reconnection.</summary>
public sealed class EdgeMqttOptions
{
    public TimeSpan SessionExpiry { get; set; } = TimeSpan.FromDays(7);
    public TimeSpan KeepAlive { get; set; } = TimeSpan.FromSeconds(30);
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan ReconnectMinDelay { get; set; } = TimeSpan.FromSeconds(1);
    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>PEM CA the agent trusts, and only it, for an <c>mqtts://</c> broker (CA pinning: the system store is not used).</summary>
    public string? CaFile { get; set; }

    /// <summary>Optional PEM client certificate (common name = device id) for mutual TLS, its key in <see cref="ClientKeyFile"/>.</summary>
    public string? ClientCertificateFile { get; set; }

    public string? ClientKeyFile { get; set; }
}

/// <summary>Bounds of the on-disk outbox of unsent updates.</summary>
public sealed class EdgeOutboxOptions
{
    public int MaxItems { get; set; } = 64;
    public long MaxBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>fsync each item; turn off only on throw-away state (simulations, tmpfs).</summary>
    public bool Fsync { get; set; } = true;
}

/// <summary>
/// FedDAA on the device (arXiv 2506.21054; docs/drift.md, "On the device"): drift statistics and verdicts per data
/// window, and training of the cluster models the cloud assigns.
/// </summary>
public sealed class EdgeDriftOptions
{
    /// <summary>
    /// Computes drift statistics with the federation's model, judges each new data window (real / virtual / label / none),
    /// sends the statistics and verdicts with the updates, and follows the cloud's cluster assignment. Off: the agent
    /// trains the federation's model on its data as without FedDAA.
    /// </summary>
    public bool Enabled { get; set; }

    /// <summary>Most samples per window in the prototype pass (one forward pass per window and reference model version).</summary>
    public int MaxStatisticsSamples { get; set; } = 512;

    /// <summary>Label-histogram shift (total variation) above which a window change is label drift (<see cref="FedEdge.Drift.DriftThresholds.LabelShift"/>).</summary>
    public float LabelShift { get; set; } = 0.2f;

    /// <summary>Mean standardised feature shift above which a window change is virtual drift (<see cref="FedEdge.Drift.DriftThresholds.FeatureShift"/>).</summary>
    public float FeatureShift { get; set; } = 0.3f;

    /// <summary>A centre change with a feature shift above <see cref="FeatureShift"/> counts as virtual drift (FedEdge's guard; false = the paper's rule).</summary>
    public bool InputShiftExplainsCentreChange { get; set; } = true;

    /// <summary>ONNX Runtime threads of the forward passes (prototypes, per-sample losses).</summary>
    public int Threads { get; set; } = 1;

    public FedEdge.Drift.DriftThresholds Thresholds() => new()
    {
        LabelShift = LabelShift,
        FeatureShift = FeatureShift,
        InputShiftExplainsCentreChange = InputShiftExplainsCentreChange,
    };
}
