using System.Globalization;
using FedEdge.Aggregation.Surrogates;

namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// FedMM (Dieuleveut, Fort, Hegazy, Wai, "Federated Majorize-Minimization: Beyond Parameter Aggregation",
/// arXiv 2507.17534; rules in the form of FedEM, Dieuleveut et al. 2021; algorithms.md §5) in synchronous rounds: the
/// devices send compressed differences of surrogate statistics Q(Δ_i), Δ_i = S_i − Ŝ − V_i
/// (<see cref="FedMMControlVariate"/>), never parameters; the server moves Ŝ and V (<see cref="FedMMServerRule"/>) and
/// publishes θ = T(Ŝ) (<see cref="ISurrogate.Map"/>) with Ŝ (<see cref="StatisticEstimate"/>).
/// <para>Who is asked, the quorum and the deadline are <see cref="SyncRoundStrategy"/>'s: ⌈p·n⌉ of the n available
/// devices drawn uniformly per version, so each is active with probability q = |asked|/n ≈ p, and the server's 1/q
/// uses the realised q (unbiased for uniform sampling without replacement). An asked device that never answers counts
/// as Q(Δ_i) = 0. The first version (no Ŝ yet) asks every available device and sets Ŝ₀ = their π-weighted mean
/// statistic, V = 0 (see <see cref="FedMMServerRule"/>).</para>
/// <para>Server state ("fedmm/s-hat" Ŝ, "fedmm/v" V, "fedmm/fleet-samples" Σ N_i for weights=samples) lives in
/// <see cref="State"/>, so a restart resumes with the same Ŝ and V.</para>
/// <example>Two devices, π = ½, α = ½, γ = 1, q = 1, quadratic surrogate L = 1, λ = 0: bootstrap S = [2], [4] gives
/// Ŝ = [3], θ = [3]; then Q(Δ) = [1], [−1] gives H = [0], Ŝ = [3], V = [0].</example>
/// </summary>
public sealed class FedMMStrategy : IFederationStrategy, IPublishesWithModel
{
    public const string EstimateKey = "fedmm/s-hat";
    public const string VariateKey = "fedmm/v";
    public const string FleetSamplesKey = "fedmm/fleet-samples";

    private readonly SyncRoundStrategy _bootstrapSampler;

    /// <param name="options">From the algorithm spec (<see cref="FedMMOptions.Parse"/>).</param>
    /// <param name="surrogate">The surrogate that maps Ŝ to θ (<see cref="FedMMOptions.CreateSurrogate"/>).</param>
    /// <param name="alpha">α, e.g. <see cref="FedMMOptions.ResolveAlpha"/> for the federation's codec.</param>
    /// <param name="rounds">Quorum, deadline and seed of the rounds; its sample fraction is replaced by p.</param>
    public FedMMStrategy(FedMMOptions options, ISurrogate surrogate, double alpha, SyncRoundOptions? rounds = null, ServerState? state = null)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        Surrogate = surrogate ?? throw new ArgumentNullException(nameof(surrogate));
        if (options.Validate() is { } problem)
        {
            throw new ArgumentException($"fedmm: {problem}", nameof(options));
        }

        Alpha = alpha is > 0 and <= 1 ? alpha : throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "α must lie in (0, 1].");
        State = state ?? new ServerState();
        rounds ??= new SyncRoundOptions();
        // The sampler's aggregator is never used: FedMM aggregates statistics itself.
        var unused = new ServerAggregator(new ServerAggregatorOptions(), 1);
        _bootstrapSampler = new SyncRoundStrategy(rounds with { SampleFraction = 1.0 }, unused);
    }

    public FedMMOptions Options { get; }

    public ISurrogate Surrogate { get; }

    public double Alpha { get; }

    public ServerState State { get; }

    public string Name => string.Create(CultureInfo.InvariantCulture,
        $"fedmm({Surrogate.Name}, α = {Alpha:G4}, γ = {Options.Gamma:G4}, p = {Options.Participation:G4}, {Options.Weighting.ToString().ToLowerInvariant()})");

    public ContributionKind Contribution => ContributionKind.SurrogateStatistics;

    public bool AddsEncodedUpdates => false;

    public bool CountsDeclines => true;

    public int ModelHistory => 0;

    public int ContributionLength => Surrogate.StatisticLength;

    public ReadOnlyMemory<float> PublishedStatistics => StatisticEstimate;

    public ulong WorkSeed(long version) => 0;

    /// <summary>α as resolved for the codec and the participation threshold of the open version (devices decide with it
    /// whether they are active, see <see cref="FedMMParticipation"/>).</summary>
    public string AnnouncedAlgorithm => (Options with { Alpha = Alpha, Participation = _threshold }).ToString();

    /// <summary>The open version's participation threshold: p, or the smallest draw of the fleet when no device drew below p.</summary>
    private double _threshold = 1.0;

    /// <summary>Whether Ŝ exists (the bootstrap version has completed).</summary>
    public bool IsBootstrapped => State.TryGet(EstimateKey, out _);

    /// <summary>Ŝ after the last completed version, to publish with θ (ModelBundle); empty before the bootstrap, when
    /// devices answer with S_i itself.</summary>
    public ReadOnlyMemory<float> StatisticEstimate => State.TryGet(EstimateKey, out var estimate) ? estimate : ReadOnlyMemory<float>.Empty;

    public VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(available);
        if (Options.Weighting == FedMMWeighting.Samples)
        {
            double total = available.Sum(d => (double)Math.Max(0, d.SampleCount));
            if (total > 0)
            {
                var stored = State.GetOrCreate(FleetSamplesKey, 1);
                if (stored[0] != (float)total)
                {
                    stored[0] = (float)total;
                    State.MarkChanged(FleetSamplesKey);
                }
            }
        }

        if (!IsBootstrapped || Options.Participation >= 1)
        {
            _threshold = 1.0;
            return _bootstrapSampler.Plan(context, available);
        }

        // Each device active with probability p, drawn so that the device can tell (FedMMParticipation). When nobody
        // drew below p the threshold rises to the smallest draw, so that one device is active; it is announced.
        long version = context.CurrentVersion + 1;
        var draws = available.Select(d => (Device: d, Draw: FedMMParticipation.Draw(Options.Seed, version, d.DeviceId))).ToList();
        _threshold = draws.Count == 0 || draws.Any(d => d.Draw < Options.Participation)
            ? Options.Participation
            : Math.BitIncrement(draws.Min(d => d.Draw));
        return _bootstrapSampler.Plan(context, [.. draws.Where(d => d.Draw < _threshold).Select(d => d.Device)]);
    }

    public IVersionAggregation Begin(VersionPlan plan) => new Aggregation(this, plan ?? throw new ArgumentNullException(nameof(plan)));

    /// <summary>π_i of a device with <paramref name="sampleCount"/> samples in a fleet of <paramref name="fleetSize"/>.</summary>
    private double Weight(double sampleCount, int fleetSize)
    {
        if (Options.Weighting == FedMMWeighting.Samples && State.TryGet(FleetSamplesKey, out var total) && total[0] > 0)
        {
            return Math.Min(1.0, Math.Max(1.0, sampleCount) / total[0]);
        }

        return 1.0 / Math.Max(1, fleetSize);
    }

    private sealed class Aggregation : IVersionAggregation
    {
        private readonly FedMMStrategy _owner;
        private readonly HashSet<string>? _participants;
        private readonly HashSet<string> _answered = new(StringComparer.Ordinal);
        private readonly double[] _sum;
        private double _weightSum;
        private int _declines;

        public Aggregation(FedMMStrategy owner, VersionPlan plan)
        {
            _owner = owner;
            Plan = plan;
            _participants = plan.Participants?.ToHashSet(StringComparer.Ordinal);
            _sum = new double[owner.Surrogate.StatisticLength];
        }

        public VersionPlan Plan { get; }

        public int Count { get; private set; }

        public int Declines => _declines;

        public bool IsReady => Count > 0 && Count + _declines >= Plan.Quorum && Count >= _owner._bootstrapSampler.Options.MinUpdates;

        public bool IsFull => false;

        public Refusal? Offer(in DeviceContribution contribution)
        {
            if (Plan.CheckOrigin(contribution) is { } origin)
            {
                return origin;
            }

            string device = contribution.DeviceId;

            if (contribution.BaseVersion < Plan.BaseVersion)
            {
                return new Refusal(RefusalKind.TooStale, $"base v{contribution.BaseVersion} is {Plan.BaseVersion - contribution.BaseVersion} version(s) behind v{Plan.BaseVersion}: its Δ_i is relative to an old Ŝ");
            }

            if (_participants is not null && !_participants.Contains(device))
            {
                return new Refusal(RefusalKind.NotExpected, $"device {device} is not sampled in round {Plan.Version}");
            }

            if (_answered.Contains(device))
            {
                return new Refusal(RefusalKind.NotExpected, $"device {device} already answered round {Plan.Version}");
            }

            if (contribution.IsDecline)
            {
                _answered.Add(device);
                _declines++;
                return null;
            }

            if (contribution.Encoded is not null)
            {
                return new Refusal(RefusalKind.Invalid, $"device {device}: FedMM takes the decoded Q(Δ_i), not an encoded payload");
            }

            var values = contribution.Values.Span;
            int m = _owner.Surrogate.StatisticLength;
            if (values.Length != m)
            {
                return new Refusal(RefusalKind.Invalid, $"device {device}: the statistic difference has {values.Length} values; {_owner.Surrogate.Name} has m = {m}");
            }

            for (int i = 0; i < values.Length; i++)
            {
                if (!float.IsFinite(values[i]))
                {
                    return new Refusal(RefusalKind.Invalid, $"device {device}: statistic value {i} is {values[i]}");
                }
            }

            double weight = _owner.Weight(contribution.SampleCount, Plan.FleetSize);
            for (int i = 0; i < values.Length; i++)
            {
                _sum[i] += weight * values[i];
            }

            _weightSum += weight;
            _answered.Add(device);
            Count++;
            return null;
        }

        public DeadlineDecision AtDeadline() =>
            Count >= Math.Max(1, _owner._bootstrapSampler.Options.MinUpdates) ? DeadlineDecision.Aggregate : DeadlineDecision.Extend;

        public VersionResult Complete(Span<float> model)
        {
            if (Count == 0)
            {
                throw new InvalidOperationException("No statistic to aggregate.");
            }

            var surrogate = _owner.Surrogate;
            if (model.Length != surrogate.ParameterCount)
            {
                throw new ArgumentException($"The model has {model.Length} values; {surrogate.Name} has d = {surrogate.ParameterCount}.", nameof(model));
            }

            int m = surrogate.StatisticLength;
            var state = _owner.State;
            var estimate = new float[m];
            var variate = new float[m];
            if (!state.TryGet(EstimateKey, out var previous))
            {
                // Bootstrap: Ŝ₀ = the π-weighted mean of S_i(θ₀), V = 0.
                for (int i = 0; i < m; i++)
                {
                    estimate[i] = (float)(_sum[i] / _weightSum);
                }
            }
            else
            {
                previous.CopyTo(estimate, 0);
                state.GetOrCreate(VariateKey, m).CopyTo(variate, 0);
                var sum = new float[m];
                for (int i = 0; i < m; i++)
                {
                    sum[i] = (float)_sum[i];
                }

                double participation = Plan.Participants is { Count: > 0 } asked
                    ? Math.Min(1.0, (double)asked.Count / Math.Max(asked.Count, Plan.FleetSize))
                    : 1.0;
                FedMMServerRule.Apply(estimate, variate, sum, participation, _owner.Alpha, _owner.Options.Gamma);
            }

            for (int i = 0; i < m; i++)
            {
                if (!float.IsFinite(estimate[i]) || !float.IsFinite(variate[i]))
                {
                    throw new InvalidUpdateException(null, $"Ŝ or V coordinate {i} is not finite after version {Plan.Version}");
                }
            }

            var next = new float[model.Length];
            model.CopyTo(next);
            surrogate.Map(estimate, next);
            next.CopyTo(model);
            state.Restore(EstimateKey, estimate);
            state.Restore(VariateKey, variate);
            state.MarkChanged(EstimateKey);
            state.MarkChanged(VariateKey);
            return new VersionResult(Plan.Version, Count);
        }
    }
}
