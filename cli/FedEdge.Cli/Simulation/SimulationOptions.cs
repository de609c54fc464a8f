namespace FedEdge.Cli.Simulation;

/// <summary>Settings of one in-process simulation (`fededge sim`): a cloud, an embedded broker and N edge agents.</summary>
public sealed record SimulationOptions
{
    public int Devices { get; init; } = 10;
    public int Rounds { get; init; } = 5;
    public string Model { get; init; } = "cnn";
    public string Partition { get; init; } = "dirichlet:0.5";
    public string Codec { get; init; } = "sign";
    public string ErrorFeedback { get; init; } = "ef14";
    public string Aggregator { get; init; } = "mean";
    /// <summary>none, sign-flip, gaussian or label-flip.</summary>
    public string Attack { get; init; } = "none";
    /// <summary>Fraction of the devices that are malicious (rounded down; at least one when the fraction is positive).</summary>
    public double Attackers { get; init; }
    public string Mode { get; init; } = "sync";
    public int LocalEpochs { get; init; } = 1;
    public int Seed { get; init; }
    /// <summary>Cap on local SGD steps per round (0 = none); keeps tests and quick runs short.</summary>
    public int MaxStepsPerRound { get; init; }
    public float LearningRate { get; init; } = 0.01f;
    public int BatchSize { get; init; } = 64;
    /// <summary>Test samples used to evaluate each global model (0 = the whole 10,000).</summary>
    public int EvaluationSamples { get; init; }
    /// <summary>Fashion-MNIST directory (null = Debian's default).</summary>
    public string? DataDirectory { get; init; }
    /// <summary>Give up when one round takes longer than this.</summary>
    public TimeSpan RoundTimeout { get; init; } = TimeSpan.FromMinutes(10);

    public int AttackerCount =>
        Attack == "none" || Attackers <= 0 ? 0 : Math.Clamp((int)Math.Floor(Attackers * Devices), 1, Devices);

    public void Validate()
    {
        if (Devices < 1) throw new ArgumentException("--devices must be at least 1.");
        if (Rounds < 1) throw new ArgumentException("--rounds must be at least 1.");
        if (LocalEpochs < 1) throw new ArgumentException("--local-epochs must be at least 1.");
        if (Attackers is < 0 or > 1) throw new ArgumentException("--attackers is a fraction in [0, 1].");
        if (Attack is not ("none" or "sign-flip" or "gaussian" or "label-flip"))
            throw new ArgumentException($"Unknown --attack '{Attack}' (none, sign-flip, gaussian, label-flip).");
        if (Mode is not ("sync" or "async")) throw new ArgumentException($"Unknown --mode '{Mode}' (sync, async).");
        if (ErrorFeedback is not ("none" or "ef14" or "ef21" or "econtrol"))
            throw new ArgumentException($"Unknown --ef '{ErrorFeedback}' (none, ef14, ef21, econtrol).");
    }
}

/// <summary>One committed global model version as seen by the simulator.</summary>
public sealed record SimulationRound(
    long Round, int Participants, long BytesUp, double? MeanTrainLoss, double TestAccuracy, double TestLoss,
    double RoundSeconds, double MeanStaleness, double ElapsedSeconds);

/// <summary>The whole run: settings, the devices that attacked, the rounds.</summary>
public sealed record SimulationResult(
    SimulationOptions Options, int ParameterCount, IReadOnlyList<string> Attackers, double InitialAccuracy,
    IReadOnlyList<SimulationRound> Rounds, double TotalSeconds, long TotalBytesUp);
