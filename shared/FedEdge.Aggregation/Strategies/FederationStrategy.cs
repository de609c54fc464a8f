namespace FedEdge.Aggregation.Strategies;

/// <summary>
/// The part every mode shares: the <see cref="ServerAggregator"/> (rule, estimate, server step, state) and one
/// <see cref="IVersionAggregation"/> that checks the contribution's shape and device, asks the mode for its scale
/// and weight (<see cref="Admit"/>), and collects it. A mode says who is asked (<see cref="Plan"/>), what a
/// contribution weighs, and when the version is ready.
/// </summary>
public abstract class FederationStrategy(ServerAggregator server) : IFederationStrategy
{
    public ServerAggregator Server { get; } = server ?? throw new ArgumentNullException(nameof(server));

    public ServerState State => Server.State;

    /// <summary>The mode's name with its parameters, e.g. "fedbuff(K=10)".</summary>
    protected abstract string Mode { get; }

    public string Name => $"{Mode} {Server.Name}";

    public ContributionKind Contribution => Server.Options.Rule == "sign-vote" ? ContributionKind.PackedSigns : ContributionKind.ModelUpdate;

    public virtual bool AddsEncodedUpdates => Server.Streams;

    public int ContributionLength => Server.Dimension;

    public virtual int ModelHistory => 0;

    public bool CountsDeclines => OneAnswerPerDevice;

    public abstract VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available);

    public IVersionAggregation Begin(VersionPlan plan) => new VersionAggregation(this, plan ?? throw new ArgumentNullException(nameof(plan)));

    /// <summary>
    /// Whether <paramref name="contribution"/> is taken into <paramref name="plan"/>'s version, and with which scale of
    /// its row and which rule weight (see <see cref="ServerAggregator"/>). Device and shape checks come after.
    /// </summary>
    protected abstract Refusal? Admit(in DeviceContribution contribution, VersionPlan plan, out float scale, out float weight);

    /// <summary>Whether the version can be aggregated before its deadline.</summary>
    protected abstract bool IsReady(IVersionAggregation version);

    /// <summary>Room for one more contribution (only a full FedBuff buffer has none).</summary>
    protected virtual bool IsFull(IVersionAggregation version) => false;

    /// <summary>What the plan's deadline does (modes without one never reach it).</summary>
    protected virtual DeadlineDecision AtDeadline(IVersionAggregation version) =>
        version.Count > 0 ? DeadlineDecision.Aggregate : DeadlineDecision.Extend;

    /// <summary>Whether a device answers a version at most once (sync rounds), and declines count towards it.</summary>
    protected virtual bool OneAnswerPerDevice => false;

    /// <summary>The factor of the rule's result before the server step (FedFix: k/n).</summary>
    protected virtual double Factor(IVersionAggregation version) => 1.0;

    /// <summary>Whether <see cref="TransformRow"/> replaces Δ_i by another row before it is collected.</summary>
    protected virtual bool TransformsRows => false;

    /// <summary>Writes the row collected for a contribution (FedAsync: x_new − x) into <paramref name="row"/>.</summary>
    protected virtual void TransformRow(in DeviceContribution contribution, VersionPlan plan, Span<float> row) => contribution.Values.Span.CopyTo(row);

    /// <summary>Rows expected, to size the batch block.</summary>
    protected virtual int Capacity(VersionPlan plan) => Math.Max(1, plan.Participants?.Count ?? plan.Quorum);

    /// <summary>Staleness τ of a contribution: versions between its base and the one the devices hold.</summary>
    protected static long Staleness(in DeviceContribution contribution, VersionPlan plan) => plan.BaseVersion - contribution.BaseVersion;

    private sealed class VersionAggregation : IVersionAggregation
    {
        private readonly FederationStrategy _owner;
        private readonly ServerAggregator.Collector _collector;
        private readonly HashSet<string>? _participants;
        private readonly HashSet<string> _answered = new(StringComparer.Ordinal);
        private readonly HashSet<string> _declined = new(StringComparer.Ordinal);
        private float[]? _row;

        public VersionAggregation(FederationStrategy owner, VersionPlan plan)
        {
            _owner = owner;
            Plan = plan;
            _collector = owner.Server.Begin(owner.Capacity(plan));
            _participants = plan.Participants?.ToHashSet(StringComparer.Ordinal);
        }

        public VersionPlan Plan { get; }

        public int Count => _collector.Count;

        public int Declines => _declined.Count;

        public bool IsReady => Count > 0 && _owner.IsReady(this);

        public bool IsFull => _owner.IsFull(this);

        public Refusal? Offer(in DeviceContribution contribution)
        {
            if (Plan.CheckOrigin(contribution) is { } origin)
            {
                return origin;
            }

            string device = contribution.DeviceId;

            if (_participants is not null && !_participants.Contains(device))
            {
                return new Refusal(RefusalKind.NotExpected, $"device {device} is not sampled in round {Plan.Version}");
            }

            if (IsFull)
            {
                return new Refusal(RefusalKind.NotExpected, $"v{Plan.Version} is full");
            }

            if (_owner.Admit(contribution, Plan, out float scale, out float weight) is { } refusal)
            {
                return refusal;
            }

            if (_owner.OneAnswerPerDevice && _answered.Contains(device))
            {
                return new Refusal(RefusalKind.NotExpected, $"device {device} already answered round {Plan.Version}");
            }

            if (contribution.IsDecline)
            {
                // A FedDAA cluster round: the device has no samples for this cluster; it answers, adds nothing.
                if (_owner.OneAnswerPerDevice && !_declined.Add(device))
                {
                    return new Refusal(RefusalKind.NotExpected, $"device {device} already answered round {Plan.Version}");
                }

                return null;
            }

            string? problem;
            if (contribution.Encoded is { } encoded)
            {
                problem = _collector.Add(encoded, scale, weight);
            }
            else if (_owner.TransformsRows && contribution.Values.Length == Plan.Model.Length)
            {
                _row ??= new float[Plan.Model.Length];
                _owner.TransformRow(contribution, Plan, _row);
                problem = _collector.Add(device, _row, scale, weight);
            }
            else
            {
                problem = _collector.Add(device, contribution.Values.Span, scale, weight);
            }

            if (problem is not null)
            {
                return new Refusal(RefusalKind.Invalid, $"device {device}: {problem}");
            }

            // An update after the device's own decline (it re-planned) replaces the decline.
            _declined.Remove(device);
            if (_owner.OneAnswerPerDevice)
            {
                _answered.Add(device);
            }

            return null;
        }

        public DeadlineDecision AtDeadline() => _owner.AtDeadline(this);

        public VersionResult Complete(Span<float> model)
        {
            _collector.Complete(model, Plan.FleetSize, _owner.Factor(this));
            return new VersionResult(Plan.Version, Count);
        }
    }
}
