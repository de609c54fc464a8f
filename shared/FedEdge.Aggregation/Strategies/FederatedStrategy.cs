namespace FedEdge.Aggregation.Strategies;

/// <summary>Device selection and training configuration shared by the synchronous strategies.</summary>
public sealed record RoundOptions
{
    /// <summary>Fraction of the available devices asked to train (Flower's fraction_fit).</summary>
    public double FractionFit { get; init; } = 1.0;

    /// <summary>At least this many devices are selected when available (Flower's min_fit_clients).</summary>
    public int MinimumDevices { get; init; } = 1;

    /// <summary>Share of the selected devices whose contributions close the round.</summary>
    public double QuorumFraction { get; init; } = 1.0;

    /// <summary>Seed of the selection; the round number is mixed in, so rounds differ but reruns agree.</summary>
    public int Seed { get; init; }

    /// <summary>Configuration every selected device receives (local epochs, learning rate, codec…).</summary>
    public IReadOnlyDictionary<string, string> DeviceConfig { get; init; } = new Dictionary<string, string>();
}

/// <summary>
/// Base for strategies: seeded uniform device sampling, the per-device configuration, and sample-weighted
/// evaluation. Subclasses decide what a round accepts and how it becomes the next model.
/// </summary>
public abstract class FederatedStrategy(RoundOptions options) : IFederatedStrategy
{
    public RoundOptions Options { get; } = options ?? throw new ArgumentNullException(nameof(options));

    public abstract string Name { get; }

    public abstract ContributionKind Contribution { get; }

    public virtual RoundPlan ConfigureRound(RoundContext context, IReadOnlyList<DeviceDescriptor> available)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(available);
        if (available.Count == 0)
        {
            throw new InvalidOperationException($"{Name}: round {context.Round} has no device to select from.");
        }

        int wanted = Math.Clamp((int)Math.Ceiling(Options.FractionFit * available.Count), Math.Min(Options.MinimumDevices, available.Count), available.Count);
        var order = available.ToArray();
        new Random(HashCode.Combine(Options.Seed, context.Round)).Shuffle(order);
        var config = new Dictionary<string, string>(Options.DeviceConfig)
        {
            ["round"] = context.Round.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["model_version"] = context.ModelVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        var assignments = order.Take(wanted)
            .Select(device => new DeviceAssignment(device.DeviceId, Contribution, config))
            .ToArray();
        int quorum = Math.Max(1, (int)Math.Ceiling(Options.QuorumFraction * wanted));
        return new RoundPlan(context, assignments, quorum);
    }

    public abstract IRoundAggregation BeginAggregation(RoundPlan plan, int dimension);

    public virtual EvaluationSummary AggregateEvaluation(long round, IReadOnlyList<DeviceEvaluation> evaluations)
    {
        ArgumentNullException.ThrowIfNull(evaluations);
        var valid = evaluations.Where(e => e.SampleCount > 0 && double.IsFinite(e.Loss)).ToArray();
        long samples = valid.Sum(e => e.SampleCount);
        if (samples == 0)
        {
            return new EvaluationSummary(round, 0, 0, double.NaN, new Dictionary<string, double>());
        }

        double loss = valid.Sum(e => e.Loss * e.SampleCount) / samples;
        var metrics = valid
            .SelectMany(e => (e.Metrics ?? new Dictionary<string, double>()).Select(m => (m.Key, m.Value, e.SampleCount)))
            .Where(m => double.IsFinite(m.Value))
            .GroupBy(m => m.Key)
            .ToDictionary(g => g.Key, g => g.Sum(m => m.Value * m.SampleCount) / g.Sum(m => (double)m.SampleCount));
        return new EvaluationSummary(round, valid.Length, samples, loss, metrics);
    }
}

/// <summary>Checks common to all round aggregations: the device was assigned, sent once, with the right kind.</summary>
public abstract class RoundAggregation : IRoundAggregation
{
    private readonly HashSet<string> _assigned;
    private readonly HashSet<string> _received = [];
    private readonly List<RefusedContribution> _refused = [];

    protected RoundAggregation(RoundPlan plan, ContributionKind kind)
    {
        Plan = plan ?? throw new ArgumentNullException(nameof(plan));
        Kind = kind;
        _assigned = plan.Assignments.Select(a => a.DeviceId).ToHashSet(StringComparer.Ordinal);
    }

    public RoundPlan Plan { get; }

    public ContributionKind Kind { get; }

    public int AcceptedCount { get; private set; }

    public IReadOnlyList<RefusedContribution> Refused => _refused;

    public SubmitResult Submit(in DeviceContribution contribution)
    {
        string? reason = contribution.DeviceId is null ? "the contribution has no device id"
            : !_assigned.Contains(contribution.DeviceId) ? $"device {contribution.DeviceId} was not selected for round {Plan.Context.Round}"
            : _received.Contains(contribution.DeviceId) ? $"device {contribution.DeviceId} already contributed to round {Plan.Context.Round}"
            : contribution.Kind != Kind ? $"expected a {Kind} contribution, got {contribution.Kind}"
            : Take(contribution);
        if (reason is not null)
        {
            _refused.Add(new RefusedContribution(contribution.DeviceId ?? "(none)", reason));
            return SubmitResult.Refused(reason);
        }

        _received.Add(contribution.DeviceId!);
        AcceptedCount++;
        return SubmitResult.Ok;
    }

    public RoundResult Complete(Span<float> globalModel)
    {
        if (AcceptedCount == 0)
        {
            throw new InvalidOperationException($"Round {Plan.Context.Round} has no accepted contribution to aggregate.");
        }

        var before = globalModel.ToArray();
        UpdateModel(globalModel);
        double norm = Math.Sqrt(Kernels.PairwiseDistances.SquaredDistance(before, globalModel));
        return new RoundResult(Plan.Context, AcceptedCount, _refused.ToArray(), norm);
    }

    /// <summary>Validates and takes the payload; returns null when accepted, else the reason.</summary>
    protected abstract string? Take(in DeviceContribution contribution);

    protected abstract void UpdateModel(Span<float> globalModel);
}
