namespace FedEdge.Cloud.Abstractions;

/// <summary>How a federation turns updates into model versions (algorithms.md §3).</summary>
public enum FederationMode
{
    /// <summary>Rounds: sample devices, wait for a quorum or a deadline, aggregate, publish.</summary>
    Sync,

    /// <summary>FedBuff (Nguyen et al. 2022): aggregate every K updates, each scaled by s(τ) = 1/√(1+τ).</summary>
    FedBuff,

    /// <summary>FedAsync (Xie et al. 2019): every update is a version, x ← (1 − α·s(τ))·x + α·s(τ)·x_new.</summary>
    FedAsync,

    /// <summary>FedFix (Fraboni et al. 2023): aggregate every Δt what returned, weighted ⌈τ_i/Δt⌉/n.</summary>
    FedFix,
}

/// <summary>A federation's configuration, set once by the operator (or `fededge sim`).</summary>
[GenerateSerializer, Immutable]
public sealed record FederationConfig
{
    /// <summary>Model name in the zoo (e.g. "cnn"); devices build the graph from it.</summary>
    [Id(0)] public string Model { get; init; } = "cnn";

    /// <summary>Update codec the devices use, e.g. "sign", "topk:0.01", "fp16", "fp32".</summary>
    [Id(1)] public string Codec { get; init; } = "fp32";

    /// <summary>Aggregation rule name understood by the aggregation library (mean, median, krum, ...).</summary>
    /// <remarks>The default is the trimmed mean with b = <see cref="ByzantineCount"/> (docs/security.md, "Poisoned
    /// updates"): one absurd update cannot move the model, and unlike the median it stays agreement-weighted like the
    /// mean, so error feedback keeps working (docs/learning.md §1). "mean" is the plain FedAvg mean.</remarks>
    [Id(2)] public string Rule { get; init; } = DefaultRule;

    /// <summary>The rule a federation gets unless it names one.</summary>
    public const string DefaultRule = "trimmed-mean";

    /// <summary>Number of model versions to produce before the federation finishes (0 = unbounded).</summary>
    [Id(3)] public int Rounds { get; init; } = 20;

    [Id(4)] public FederationMode Mode { get; init; } = FederationMode.Sync;

    /// <summary>Sync: fraction of live devices sampled per round (0, 1].</summary>
    [Id(5)] public double SampleFraction { get; init; } = 1.0;

    /// <summary>Sync: at the deadline the round closes if at least this many updates arrived (else it waits longer).</summary>
    [Id(6)] public int MinUpdates { get; init; } = 1;

    /// <summary>Sync: the round closes early once this share of the sampled devices has reported (1 = all).</summary>
    [Id(13)] public double QuorumFraction { get; init; } = 1.0;

    /// <summary>Sync: the round closes at this deadline with what arrived (at least <see cref="MinUpdates"/>).</summary>
    [Id(7)] public TimeSpan RoundDeadline { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>FedBuff: buffer size K.</summary>
    [Id(8)] public int BufferSize { get; init; } = 10;

    /// <summary>Asynchronous modes: updates more than this many versions behind are refused (NVFlare's edge example uses 100).</summary>
    [Id(9)] public int MaxStaleness { get; init; } = 100;

    /// <summary>Server learning rate η_g applied to the aggregate (the step size of <see cref="ServerOptimizer"/>).</summary>
    [Id(10)] public double ServerLearningRate { get; init; } = 1.0;

    /// <summary>Assumed number of Byzantine devices f, for the rules that need it (capped per version to what its
    /// updates tolerate: n &gt; 2f). 1 by default, so that the default trimmed mean drops the extremes of each coordinate.</summary>
    [Id(11)] public int ByzantineCount { get; init; } = 1;

    /// <summary>Seed of device sampling and randomized rules.</summary>
    [Id(14)] public int Seed { get; init; }

    /// <summary>
    /// Error feedback the devices use: "none", "ef14" (device-side only), "ef21" or "econtrol". With the last two
    /// the devices send compressed differences and the server keeps estimates (see <see cref="EstimateAggregation"/>).
    /// Sync mode only.
    /// </summary>
    [Id(15)] public string ErrorFeedback { get; init; } = "none";

    /// <summary>
    /// EF21/EControl only: "estimates" (Byz-EF21, Rammal et al. 2024: the server keeps every device's g_i and the rule
    /// aggregates the g_i) or "messages" (the server keeps g = mean g_i, g ← g + (k/n)·rule(c_1..c_k): the rule sees
    /// compressed messages). The default, "messages", measured 2–4 points better than "estimates", clean and under every
    /// attack of docs/learning.md §4 (sign + EF21, trimmed mean, 50 rounds).
    /// </summary>
    [Id(22)] public string EstimateAggregation { get; init; } = "messages";

    /// <summary>FedOpt server optimizer on the aggregate: none, fedavgm, fedadam, fedyogi, fedadagrad (Reddi et al. 2021).</summary>
    [Id(23)] public string ServerOptimizer { get; init; } = "none";

    /// <summary>FedAvgM's β; FedAdam/FedYogi/FedAdagrad's β₁.</summary>
    [Id(24)] public double ServerMomentum { get; init; } = 0.9;

    /// <summary>Asynchronous modes: the staleness function s(τ) (fedbuff, constant, polynomial[:a], hinge[:a,b]); empty
    /// for the mode's own (FedBuff 1/√(1+τ), FedAsync polynomial:0.5, FedFix none beyond ⌈τ_i/Δt⌉).</summary>
    [Id(25)] public string Staleness { get; init; } = "";

    /// <summary>FedAsync: α, the mixing rate of a fresh update.</summary>
    [Id(26)] public double MixingRate { get; init; } = 0.5;

    /// <summary>FedFix: Δt, the aggregation period.</summary>
    [Id(27)] public TimeSpan AggregationPeriod { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// What devices compute and how the server turns it into a model, in the syntax of <c>FedEdge.Protocol.AlgorithmSpec</c>,
    /// announced with every model: "fedavg" (the default: local training, updates Δ, <see cref="Rule"/> and
    /// <see cref="Mode"/> as configured), "fedavg:l1=λ" (local proximal SGD on g = λ‖θ‖₁), "fedmm:surrogate=...,..."
    /// (FedMM surrogate statistics, algorithms.md §5) or "far-sign:order=first|zeroth,directions=K,..." (FAR-SIGN's
    /// signed directional derivatives, §4).
    /// </summary>
    [Id(28)] public string Algorithm { get; init; } = "fedavg";

    /// <summary>Whether the server keeps an EF21/EControl estimate.</summary>
    public bool UsesServerEstimate => ErrorFeedback is "ef21" or "econtrol";

    /// <summary>
    /// Largest sample count a device may claim for one update (its weight in a sample-weighted mean). Updates
    /// claiming more are rejected as <see cref="RejectionReason.SampleCountOutOfRange"/>, so a device cannot
    /// dominate the mean by lying about its data size. Set it to the largest local dataset the fleet has.
    /// </summary>
    [Id(16)] public long MaxSampleCount { get; init; } = 1_000_000;

    /// <summary>
    /// Largest L2 norm of one decoded update; above it the update is rejected as
    /// <see cref="RejectionReason.NormOutOfRange"/> when it is verified. 0 (the default): no absolute bound.
    /// </summary>
    [Id(40)] public double MaxUpdateNorm { get; init; }

    /// <summary>
    /// Largest L2 norm of one update as a multiple of the median norm of the federation's recently accepted updates
    /// (the last 100; the bound applies once 5 are known). 0 turns it off. 10 by default: honest norms of one
    /// federation stay within a small factor of each other, while a scaled or 1e30 update is far outside.
    /// </summary>
    [Id(41)] public double MaxNormToMedian { get; init; } = 10;

    /// <summary>
    /// Drift-aware clustering of the devices: "none" (one model) or "feddaa" (FedDAA, arXiv 2506.21054: the
    /// federation's own model is the reference model, cluster 0; after <see cref="WarmupVersions"/> the cloud clusters
    /// the devices' prototypes every <see cref="ReclusterEvery"/> reference versions and trains one model per cluster).
    /// </summary>
    [Id(17)] public string Clustering { get; init; } = "none";

    /// <summary>FedDAA: reference-model versions between two clustering decisions (one FedDAA time step).</summary>
    [Id(18)] public int ReclusterEvery { get; init; } = 10;

    /// <summary>FedDAA: largest number of clusters tried (k = 2..MaxClusters by silhouette; the paper's 9).</summary>
    [Id(19)] public int MaxClusters { get; init; } = 9;

    /// <summary>FedDAA: hysteresis; k changes only when another k's silhouette beats the kept one's by this much.</summary>
    [Id(20)] public double ClusterSwitchMargin { get; init; } = 0.05;

    /// <summary>FedDAA: reference-model versions trained alone before the first clustering (prototypes of an untrained model carry no concept).</summary>
    [Id(21)] public int WarmupVersions { get; init; } = 10;

    /// <summary>Whether the federation clusters its devices (FedDAA).</summary>
    public bool IsClustered => Clustering == "feddaa";

    /// <summary>Extra rule parameters by name: m, bucket, tau, iters, nu.</summary>
    [Id(12)] public IReadOnlyDictionary<string, string> RuleParameters { get; init; } = new Dictionary<string, string>();

    /// <summary>Checks the values and returns the first problem, or null.</summary>
    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(Model)) return "Model is empty";
        if (string.IsNullOrWhiteSpace(Codec)) return "Codec is empty";
        if (string.IsNullOrWhiteSpace(Rule)) return "Rule is empty";
        if (Rounds < 0) return $"Rounds must be ≥ 0 (got {Rounds})";
        if (!(SampleFraction > 0 && SampleFraction <= 1)) return $"SampleFraction must be in (0, 1] (got {SampleFraction})";
        if (!(QuorumFraction > 0 && QuorumFraction <= 1)) return $"QuorumFraction must be in (0, 1] (got {QuorumFraction})";
        if (MinUpdates < 1) return $"MinUpdates must be ≥ 1 (got {MinUpdates})";
        if (RoundDeadline <= TimeSpan.Zero) return $"RoundDeadline must be positive (got {RoundDeadline})";
        if (BufferSize < 1) return $"BufferSize must be ≥ 1 (got {BufferSize})";
        if (MaxStaleness < 0) return $"MaxStaleness must be ≥ 0 (got {MaxStaleness})";
        if (!(ServerLearningRate > 0) || double.IsInfinity(ServerLearningRate)) return $"ServerLearningRate must be positive (got {ServerLearningRate})";
        if (ErrorFeedback is not ("none" or "ef14" or "ef21" or "econtrol")) return $"ErrorFeedback must be none, ef14, ef21 or econtrol (got '{ErrorFeedback}')";
        if (UsesServerEstimate && Mode != FederationMode.Sync) return $"ErrorFeedback {ErrorFeedback} keeps a server estimate over sync rounds; use Mode = Sync";
        if (EstimateAggregation is not ("estimates" or "messages")) return $"EstimateAggregation must be estimates or messages (got '{EstimateAggregation}')";
        if (!Enum.IsDefined(Mode)) return $"Mode {Mode} is not a federation mode";
        if (!(MixingRate > 0 && MixingRate <= 1)) return $"MixingRate must be in (0, 1] (got {MixingRate})";
        if (AggregationPeriod <= TimeSpan.Zero) return $"AggregationPeriod must be positive (got {AggregationPeriod})";
        if (!(ServerMomentum >= 0 && ServerMomentum < 1)) return $"ServerMomentum must be in [0, 1) (got {ServerMomentum})";
        if (MaxSampleCount < 1) return $"MaxSampleCount must be ≥ 1 (got {MaxSampleCount})";
        if (!(MaxUpdateNorm >= 0) || double.IsInfinity(MaxUpdateNorm)) return $"MaxUpdateNorm must be ≥ 0 and finite, 0 for none (got {MaxUpdateNorm})";
        if (!(MaxNormToMedian == 0 || MaxNormToMedian >= 1) || double.IsInfinity(MaxNormToMedian)) return $"MaxNormToMedian must be 0 (off) or ≥ 1 (got {MaxNormToMedian})";
        if (ByzantineCount < 0) return $"ByzantineCount must be ≥ 0 (got {ByzantineCount})";
        if (Clustering is not ("none" or "feddaa")) return $"Clustering must be none or feddaa (got '{Clustering}')";
        if (IsClustered)
        {
            if (ReclusterEvery < 1) return $"ReclusterEvery must be ≥ 1 (got {ReclusterEvery})";
            if (MaxClusters is < 2 or > 64) return $"MaxClusters must be in [2, 64] (got {MaxClusters})";
            if (!(ClusterSwitchMargin >= 0 && ClusterSwitchMargin <= 2)) return $"ClusterSwitchMargin must be in [0, 2] (got {ClusterSwitchMargin})";
            if (WarmupVersions < 0) return $"WarmupVersions must be ≥ 0 (got {WarmupVersions})";
            if (Rounds > 0 && WarmupVersions >= Rounds) return $"WarmupVersions ({WarmupVersions}) must be below Rounds ({Rounds}), or the federation finishes before it clusters";
        }
        return null;
    }
}
