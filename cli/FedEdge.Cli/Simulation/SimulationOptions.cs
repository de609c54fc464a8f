using FedEdge.Aggregation;

namespace FedEdge.Cli.Simulation;

/// <summary>
/// Settings of one simulation (`fededge sim`): a cloud, a broker and N in-process edge agents. The defaults are the
/// README's first command: 20 devices on Dirichlet(0.5) Fashion-MNIST, scaled sign + EF14, the robust default rule
/// for sign updates, 20 % colluding ALIE attackers, capped local work so that it ends in a few minutes on 2 cores.
/// </summary>
public sealed record SimulationOptions
{
    /// <summary>The rule `fededge sim` uses unless told otherwise; chosen by measurement (docs/learning.md).</summary>
    public const string RobustDefaultRule = "trimmed-mean";

    public int Devices { get; init; } = 20;
    public int Rounds { get; init; } = 20;
    public string Model { get; init; } = "cnn";
    public string Partition { get; init; } = "dirichlet:0.5";
    public string Codec { get; init; } = "sign";
    public string ErrorFeedback { get; init; } = "ef14";
    public string Aggregator { get; init; } = RobustDefaultRule;
    /// <summary>Bucket size s of the bucketing pre-aggregator (0 or 1 = none; algorithms.md §2).</summary>
    public int BucketSize { get; init; }
    /// <summary>τ of centered clipping (null = the library's default).</summary>
    public double? ClippingRadius { get; init; }
    /// <summary>Server learning rate η_g: x ← x + η_g·aggregate (1 = plain FedAvg step).</summary>
    public double ServerLearningRate { get; init; } = 1.0;
    /// <summary>One of <see cref="SimulationAttacks.Names"/>.</summary>
    public string Attack { get; init; } = "alie";
    /// <summary>Fraction of the devices that are malicious (rounded down; at least one when the fraction is positive).</summary>
    public double Attackers { get; init; } = 0.2;
    /// <summary>sync, fedbuff (alias async), fedasync or fedfix (algorithms.md §3).</summary>
    public string Mode { get; init; } = "sync";
    /// <summary>Server optimizer: none, fedavgm, fedadam, fedyogi, fedadagrad.</summary>
    public string ServerOptimizer { get; init; } = "none";
    /// <summary>FedBuff's K (null: half the devices).</summary>
    public int? BufferSize { get; init; }
    /// <summary>Asynchronous modes' s(τ) ("" = the mode's own).</summary>
    public string Staleness { get; init; } = "";
    public int MaxStaleness { get; init; } = 100;
    /// <summary>FedAsync's α.</summary>
    public double MixingRate { get; init; } = 0.5;
    /// <summary>FedFix's Δt.</summary>
    public TimeSpan AggregationPeriod { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>EF21/EControl: "messages" (the rule over the compressed messages; measured the better default,
    /// docs/learning.md §4) or "estimates" (Byz-EF21).</summary>
    public string EstimateAggregation { get; init; } = "messages";

    /// <summary>The federation mode <see cref="Mode"/> names.</summary>
    public FedEdge.Cloud.Abstractions.FederationMode FederationMode => Mode switch
    {
        "fedbuff" or "async" => FedEdge.Cloud.Abstractions.FederationMode.FedBuff,
        "fedasync" => FedEdge.Cloud.Abstractions.FederationMode.FedAsync,
        "fedfix" => FedEdge.Cloud.Abstractions.FederationMode.FedFix,
        _ => FedEdge.Cloud.Abstractions.FederationMode.Sync,
    };
    /// <summary>
    /// What the devices compute (<see cref="FedEdge.Protocol.AlgorithmSpec"/>): fedavg (local training), fedmm (surrogate
    /// statistics, algorithms.md §5; synchronous rounds, statistics averaged) or far-sign (signed directional derivatives,
    /// §4; fully asynchronous). Parameters may follow the name ("fedmm:gamma=0.5"); <see cref="L1"/>, <see cref="Surrogate"/>,
    /// <see cref="Smoothness"/>, <see cref="Order"/> and <see cref="Directions"/> add theirs.
    /// </summary>
    public string Algorithm { get; init; } = "fedavg";
    /// <summary>λ of g(θ) = λ‖θ‖₁: FedAvg trains with local proximal SGD on it, FedMM's map handles it exactly.</summary>
    public double L1 { get; init; }
    /// <summary>FedMM's surrogate: quadratic or logistic (null: logistic for logreg, else quadratic).</summary>
    public string? Surrogate { get; init; }
    /// <summary>FedMM's quadratic surrogate: L (null: the softmax bound for logreg/normalised inputs).</summary>
    public double? Smoothness { get; init; }
    /// <summary>FAR-SIGN: first or zeroth order (null: the library default, first).</summary>
    public string? Order { get; init; }
    /// <summary>FAR-SIGN: directions K per answer message (null: the library default).</summary>
    public int? Directions { get; init; }
    /// <summary>Training samples the per-version objective g(θ) + f(θ) is computed on (0: all of them, the union of the
    /// devices' data; null: all for logreg and mlp, the first 5,000 for the convolutional models).</summary>
    public int? ObjectiveSamples { get; init; }

    /// <summary>The algorithm spec announced to the devices, with the options above merged in.</summary>
    public FedEdge.Protocol.AlgorithmSpec AlgorithmSpec
    {
        get
        {
            var parsed = FedEdge.Protocol.AlgorithmSpec.Parse(Algorithm);
            var parameters = new Dictionary<string, string>(parsed.Parameters, StringComparer.Ordinal);
            void Set(string key, object? value)
            {
                if (value is not null)
                    parameters[key] = Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)!;
            }
            switch (parsed.Name)
            {
                case FedEdge.Protocol.AlgorithmSpec.FedAvg:
                    if (L1 > 0) Set("l1", L1);
                    break;
                case FedEdge.Protocol.AlgorithmSpec.FedMM:
                    if (L1 > 0) Set("l1", L1);
                    var surrogate = Surrogate ?? (parameters.TryGetValue("surrogate", out var given) ? given : Model == "logreg" ? "logistic" : "quadratic");
                    Set("surrogate", surrogate);
                    if (surrogate == "quadratic")
                        Set("l", Smoothness); // else the runner bounds L from the data (logreg) or refuses
                    break;
                case FedEdge.Protocol.AlgorithmSpec.FarSign:
                    Set("order", Order);
                    Set("directions", Directions);
                    break;
            }
            return new FedEdge.Protocol.AlgorithmSpec(parsed.Name, parameters);
        }
    }

    /// <summary>The mode the algorithm runs in: FedMM in synchronous rounds, FAR-SIGN answer by answer, FedAvg as <see cref="Mode"/> says.</summary>
    public FedEdge.Cloud.Abstractions.FederationMode EffectiveMode => AlgorithmSpec.Name switch
    {
        FedEdge.Protocol.AlgorithmSpec.FedMM => FedEdge.Cloud.Abstractions.FederationMode.Sync,
        FedEdge.Protocol.AlgorithmSpec.FarSign => FedEdge.Cloud.Abstractions.FederationMode.FedAsync,
        _ => FederationMode,
    };

    /// <summary>The rule: FedMM and FAR-SIGN aggregate by their own rules (the mean of statistics; the two-timescale sign rule).</summary>
    public string EffectiveRule => AlgorithmSpec.Name == FedEdge.Protocol.AlgorithmSpec.FedAvg ? Aggregator : "mean";

    public int LocalEpochs { get; init; } = 1;
    public int Seed { get; init; }
    /// <summary>Cap on local SGD steps per round (0 = none); keeps the default run and tests short.</summary>
    public int MaxStepsPerRound { get; init; } = 40;
    /// <summary>Local optimizer: sgd, momentum (heavy ball, μ = 0.9, NIID-Bench's setting) or adam.</summary>
    public string Optimizer { get; init; } = "momentum";
    public float LearningRate { get; init; } = 0.01f;
    public int BatchSize { get; init; } = 64;
    /// <summary>Test samples used to evaluate each global model (0 = the whole 10,000).</summary>
    public int EvaluationSamples { get; init; } = 2000;
    /// <summary>Fashion-MNIST directory (null = Debian's default).</summary>
    public string? DataDirectory { get; init; }
    /// <summary>"embedded" (an MQTTnet broker on a free loopback port) or mqtt://host:port (mqtts://host:port) of an external broker.</summary>
    public string Broker { get; init; } = "embedded";
    /// <summary>For an mqtts:// <see cref="Broker"/>: the PEM CA the cloud and the agents trust for it (and only it).</summary>
    public string? BrokerCaFile { get; init; }
    /// <summary>The agents use the embedded broker's TLS listener (certificates made for the run, CA pinned) instead of plain loopback TCP.</summary>
    public bool EmbeddedBrokerTls { get; init; }
    /// <summary>Window W of the global-model diameter (algorithms.md §7).</summary>
    public int DiagnosticsWindow { get; init; } = 5;
    /// <summary>Give up when no new version is committed for this long.</summary>
    public TimeSpan RoundTimeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>
    /// The federation's round deadline: a round closes then with the updates that arrived (null = <see cref="RoundTimeout"/>).
    /// Devices whose local training diverged send nothing, so a short deadline lets a run that an attack broke finish.
    /// </summary>
    public TimeSpan? RoundDeadline { get; init; }
    /// <summary>How long colluding attackers (ALIE, IPM) wait for the honest updates of a round.</summary>
    public TimeSpan CollusionWait { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Devices' speeds (<see cref="SimulatedDevices"/>): <c>uniform</c> (all as fast as this machine) or
    /// <c>lognormal:SIGMA</c> (device i is exp(SIGMA·z_i) times slower, z_i ~ N(0, 1) seeded by <see cref="Seed"/>).
    /// </summary>
    public string DeviceSpeed { get; init; } = "uniform";
    /// <summary>Fraction of the devices that straggle (rounded down; at least one when positive).</summary>
    public double Stragglers { get; init; }
    /// <summary>How many times slower a straggler is, on top of its speed draw.</summary>
    public double StragglerSlowdown { get; init; } = 10;
    /// <summary>Fraction of the devices that go offline once during the run (rounded down; at least one when positive).</summary>
    public double Offline { get; init; }
    /// <summary>How long (simulated seconds) an offline device stays off the network.</summary>
    public double OfflineSeconds { get; init; } = 30;
    /// <summary>Real seconds per simulated second of the devices' extra time and outages (1 = real time; 0.1 = ten times shorter runs).</summary>
    public double TimeScale { get; init; } = 1;
    /// <summary>Test accuracy whose first version's elapsed time the run reports (time to accuracy).</summary>
    public double TargetAccuracy { get; init; } = 0.8;

    /// <summary>σ of the lognormal speed draw (0 = uniform).</summary>
    public double SpeedSigma => SimulatedDevices.ParseSpeed(DeviceSpeed);

    public int StragglerCount => SimulatedDevices.Share(Stragglers, Devices);

    public int OfflineCount => SimulatedDevices.Share(Offline, Devices);

    /// <summary>Whether any device differs from this machine's speed (else the agents get no <see cref="FedEdge.Edge.Training.IDeviceSpeed"/>).</summary>
    public bool HeterogeneousDevices => SpeedSigma > 0 || (StragglerCount > 0 && StragglerSlowdown > 1) || OfflineCount > 0;

    /// <summary>
    /// The federation's <c>MaxNormToMedian</c>. 0 by default (unlike the cloud's 10): the simulator measures the rules
    /// under attack, and the norm bound would refuse a magnitude attacker's updates before any rule saw them (a FedBuff
    /// buffer of K = n then never fills).
    /// </summary>
    public double MaxNormToMedian { get; init; }

    /// <summary>
    /// f the robust rule is configured with (null = <see cref="ByzantineCount"/>'s default). An operator sets f from the
    /// share of devices the federation must tolerate, without knowing whether anyone attacks.
    /// </summary>
    public int? AssumedByzantine { get; init; }

    /// <summary>
    /// f handed to the federation's rule: <see cref="AssumedByzantine"/>, else the attackers present, else (a clean run)
    /// the count that <see cref="Attackers"/> would give, at most (n − 1)/2. So a clean run uses the same rule as the
    /// attacked runs it is compared with; with f = 0 the trimmed mean would be the plain mean (docs/learning.md §3).
    /// </summary>
    public int ByzantineCount => AssumedByzantine
        ?? (AttackerCount > 0 ? AttackerCount : Math.Min((int)Math.Floor(Attackers * Devices), (Devices - 1) / 2));

    public int AttackerCount =>
        Attack == "none" || Attackers <= 0 ? 0 : Math.Clamp((int)Math.Floor(Attackers * Devices), 1, Devices);

    public bool UsesEmbeddedBroker => string.Equals(Broker, "embedded", StringComparison.OrdinalIgnoreCase);

    public void Validate()
    {
        if (Devices < 1) throw new ArgumentException("--devices must be at least 1.");
        if (Rounds < 1) throw new ArgumentException("--rounds must be at least 1.");
        if (LocalEpochs < 1) throw new ArgumentException("--local-epochs must be at least 1.");
        if (MaxStepsPerRound < 0) throw new ArgumentException("--max-steps must be ≥ 0.");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"--lr must be positive (got {LearningRate}).");
        if (Optimizer is not ("sgd" or "momentum" or "adam")) throw new ArgumentException($"Unknown --optimizer '{Optimizer}' (sgd, momentum, adam).");
        if (Attackers is < 0 or > 1) throw new ArgumentException("--attackers is a fraction in [0, 1].");
        if (!SimulationAttacks.Names.Contains(Attack))
            throw new ArgumentException($"Unknown --attack '{Attack}' ({string.Join(", ", SimulationAttacks.Names)}).");
        if (SimulationAttacks.IsOmniscient(Attack) && AttackerCount > 0 && AttackerCount >= Devices)
            throw new ArgumentException($"--attack {Attack} forges from honest updates: at least one device must be honest.");
        if (Mode is not ("sync" or "async" or "fedbuff" or "fedasync" or "fedfix")) throw new ArgumentException($"Unknown --mode '{Mode}' (sync, fedbuff, fedasync, fedfix).");
        if (!FedEdge.Aggregation.Strategies.ServerAggregatorOptions.Optimizers.Contains(ServerOptimizer))
            throw new ArgumentException($"Unknown --server-opt '{ServerOptimizer}' ({string.Join(", ", FedEdge.Aggregation.Strategies.ServerAggregatorOptions.Optimizers)}).");
        if (BufferSize is < 1) throw new ArgumentException($"--buffer must be at least 1 (got {BufferSize}).");
        if (Staleness.Length > 0 && !FedEdge.Aggregation.Asynchronous.StalenessWeightings.TryParse(Staleness, out _, out var stalenessProblem))
            throw new ArgumentException($"--staleness: {stalenessProblem}.");
        if (MaxStaleness < 0) throw new ArgumentException("--max-staleness must be ≥ 0.");
        if (!(MixingRate > 0 && MixingRate <= 1)) throw new ArgumentException($"--alpha must be in (0, 1] (got {MixingRate}).");
        if (AggregationPeriod <= TimeSpan.Zero) throw new ArgumentException("--period must be positive.");
        if (EstimateAggregation is not ("estimates" or "messages")) throw new ArgumentException($"--ef21-over is estimates or messages (got '{EstimateAggregation}').");
        if (!FedEdge.Protocol.AlgorithmSpec.TryParse(Algorithm, out var algorithm, out var algorithmProblem)) throw new ArgumentException($"--algorithm: {algorithmProblem}");
        if (algorithm.Name is not (FedEdge.Protocol.AlgorithmSpec.FedAvg or FedEdge.Protocol.AlgorithmSpec.FedMM or FedEdge.Protocol.AlgorithmSpec.FarSign))
            throw new ArgumentException($"Unknown --algorithm '{algorithm.Name}' (fedavg, fedmm, far-sign).");
        if (!(L1 >= 0) || !double.IsFinite(L1)) throw new ArgumentException($"--l1 must be ≥ 0 (got {L1}).");
        if (L1 > 0 && algorithm.Name == FedEdge.Protocol.AlgorithmSpec.FarSign) throw new ArgumentException("--l1 applies to fedavg and fedmm, not far-sign.");
        if (Order is not (null or "first" or "zeroth")) throw new ArgumentException($"--order is first or zeroth (got '{Order}').");
        if (Directions is < 1) throw new ArgumentException($"--directions must be at least 1 (got {Directions}).");
        if (ObjectiveSamples is < 0) throw new ArgumentException($"--objective-samples must be ≥ 0 (got {ObjectiveSamples}).");
        if (algorithm.Name != FedEdge.Protocol.AlgorithmSpec.FedAvg && ErrorFeedback is "ef21" or "econtrol")
            throw new ArgumentException($"--algorithm {algorithm.Name} sends no model updates: --ef {ErrorFeedback} does not apply (use --ef none).");
        if (algorithm.Name == FedEdge.Protocol.AlgorithmSpec.FedAvg && FederationMode == FedEdge.Cloud.Abstractions.FederationMode.FedAsync && Aggregator != "mean")
            throw new ArgumentException($"--mode fedasync mixes one update per version: '{Aggregator}' has nothing to be robust over; use --aggregator mean, or --mode fedbuff for a robust asynchronous federation.");
        if (ErrorFeedback is "ef21" or "econtrol" && EffectiveMode != FedEdge.Cloud.Abstractions.FederationMode.Sync)
            throw new ArgumentException($"--ef {ErrorFeedback} keeps server estimates over sync rounds; use --mode sync (or --ef ef14).");
        if (ErrorFeedback is not ("none" or "ef14" or "ef21" or "econtrol"))
            throw new ArgumentException($"Unknown --ef '{ErrorFeedback}' (none, ef14, ef21, econtrol).");
        if (!AggregationRuleFactory.Names.Contains(Aggregator))
            throw new ArgumentException($"Unknown --aggregator '{Aggregator}' ({string.Join(", ", AggregationRuleFactory.Names)}).");
        if (AssumedByzantine is { } assumed && (assumed < 0 || 2 * assumed >= Devices))
            throw new ArgumentException($"--assume-f must be in [0, devices/2) (got {assumed} for {Devices} devices).");
        if (BucketSize < 0) throw new ArgumentException("--bucket must be ≥ 0.");
        if (!(ServerLearningRate > 0) || !double.IsFinite(ServerLearningRate)) throw new ArgumentException($"--server-lr must be positive (got {ServerLearningRate}).");
        if (ClippingRadius is { } tau && !(tau > 0)) throw new ArgumentException($"--tau must be positive (got {tau}).");
        if (RoundTimeout <= TimeSpan.Zero) throw new ArgumentException("--give-up must be positive.");
        if (RoundDeadline is { } deadline && deadline <= TimeSpan.Zero) throw new ArgumentException("--round-deadline must be positive.");
        if (DiagnosticsWindow < 2) throw new ArgumentException("The diagnostics window must hold at least 2 models.");
        _ = SpeedSigma; // throws the parse error
        if (Stragglers is < 0 or > 1 || double.IsNaN(Stragglers)) throw new ArgumentException($"--stragglers is a fraction in [0, 1] (got {Stragglers}).");
        if (!(StragglerSlowdown >= 1) || !double.IsFinite(StragglerSlowdown))
            throw new ArgumentException($"--straggler-slowdown is a factor ≥ 1 (got {StragglerSlowdown}).");
        if (Offline is < 0 or > 1 || double.IsNaN(Offline)) throw new ArgumentException($"--offline is a fraction in [0, 1] (got {Offline}).");
        if (!(OfflineSeconds >= 0) || !double.IsFinite(OfflineSeconds)) throw new ArgumentException($"--offline-seconds must be ≥ 0 (got {OfflineSeconds}).");
        if (OfflineCount > 0 && OfflineSeconds == 0) throw new ArgumentException("--offline needs --offline-seconds > 0.");
        if (!(TimeScale > 0) || !double.IsFinite(TimeScale)) throw new ArgumentException($"--time-scale must be positive (got {TimeScale}).");
        if (!(TargetAccuracy is > 0 and <= 1)) throw new ArgumentException($"--target-accuracy is in (0, 1] (got {TargetAccuracy}).");
        if (!UsesEmbeddedBroker && (!Uri.TryCreate(Broker, UriKind.Absolute, out var uri) || uri.Scheme is not ("mqtt" or "tcp" or "mqtts")))
            throw new ArgumentException($"--broker is 'embedded', mqtt://host:port or mqtts://host:port (got '{Broker}').");
        if (EmbeddedBrokerTls && !UsesEmbeddedBroker) throw new ArgumentException("--tls is for the embedded broker; an external one is mqtts://host:port with --broker-ca.");
        if (!UsesEmbeddedBroker && Broker.StartsWith("mqtts:", StringComparison.OrdinalIgnoreCase) && string.IsNullOrWhiteSpace(BrokerCaFile))
            throw new ArgumentException("--broker mqtts://… needs --broker-ca, the PEM CA that the cloud and the agents trust for it.");
    }
}

/// <summary>One committed global model version as seen by the simulator.</summary>
/// <param name="BytesUp">Update envelopes the cloud accepted for this version.</param>
/// <param name="BytesDown">The published model's bytes times the devices subscribed to it.</param>
/// <param name="MonotonicityViolations">Fraction of consecutive rounds so far with ⟨Δθ, ΔF⟩ &lt; 0 (algorithms.md §7).</param>
/// <param name="Diameter">max ‖x_s − x_t‖ over the last W global models (algorithms.md §7).</param>
/// <param name="ElapsedSeconds">Wall-clock seconds from the agents' start to the version's commit.</param>
public sealed record SimulationRound(
    long Round, int Participants, long BytesUp, long BytesDown, double? MeanTrainLoss, double TestAccuracy, double TestLoss,
    double RoundSeconds, double MeanStaleness, double ElapsedSeconds, double MonotonicityViolations, double Diameter)
{
    /// <summary>The full objective g(θ) + f(θ): λ‖θ‖₁ plus the mean training loss over the union of the devices' data
    /// (<see cref="SimulationOptions.ObjectiveSamples"/>); NaN where the version was not evaluated.</summary>
    public double Objective { get; init; } = double.NaN;

    /// <summary>Fraction of θ's coordinates that are exactly 0 (what an L1 penalty buys on a device).</summary>
    public double Sparsity { get; init; } = double.NaN;
}

/// <summary>The whole run: settings, the devices that attacked, the rounds.</summary>
/// <param name="LastToAverageGap">‖x_last − x̄‖ between the last and the averaged global model (algorithms.md §7).</param>
/// <param name="CollusionShortWaits">Times a colluding attacker forged before every honest update had arrived.</param>
/// <param name="Devices">Every device's drawn speed, straggling and outage (the settings are in <paramref name="Options"/>).</param>
/// <param name="Outages">Simulated outages that began during the run.</param>
public sealed record SimulationResult(
    SimulationOptions Options, int ParameterCount, int ModelBytes, IReadOnlyList<string> Attackers, double InitialAccuracy,
    IReadOnlyList<SimulationRound> Rounds, double TotalSeconds, long TotalBytesUp, long TotalBytesDown,
    double LastToAverageGap, int CollusionShortWaits, IReadOnlyList<SimulatedDevice> Devices, long Outages)
{
    /// <summary>What the cloud ran, as the federation reports it (mode, rule with its f, estimates, server step).</summary>
    public string Strategy { get; init; } = "";

    /// <summary>Elapsed seconds of the first version at <see cref="SimulationOptions.TargetAccuracy"/> (null = not reached).</summary>
    public double? TimeToTargetSeconds => SimulationReport.TimeToAccuracy(Rounds, Options.TargetAccuracy);
}
