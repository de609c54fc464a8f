using System.Globalization;
using FedEdge.Aggregation.Strategies;

namespace FedEdge.Aggregation.SignedDirections;

/// <summary>
/// FAR-SIGN (arXiv 2605.09337, "Adversary-Robust Learning from Fully Asynchronous Directional Derivative Estimates";
/// FedEdge's [design] realisation of algorithms.md §4, since the paper's equations were not available): fully
/// asynchronous, every answer message is applied as it arrives and makes a version (quorum 1, no deadline, no buffer,
/// like <see cref="FedAsyncStrategy"/>). A message answers the K directions of its base version's work seed
/// (<see cref="WorkSeed"/>) for its device; stale answers are applied to the current model as they are, the two-timescale
/// rule (<see cref="TwoTimescaleSignRule"/>) absorbing the delay. A device answers a base version at most once, and
/// never one older than its last; K is bounded by <see cref="FarSignOptions.Directions"/>.
/// <para>
/// Server state (persisted by the host after each version): "far-sign/y" (the direction estimate, d floats),
/// "far-sign/k" (answers applied, as [k / 2^24, k mod 2^24] so that floats hold it exactly) and
/// "far-sign/device/{id}" (the last base version the device answered, + 1, in the same two-float form).
/// </para>
/// </summary>
public sealed class FarSignStrategy : IFederationStrategy, IPublishesWithModel
{
    public const string EstimateKey = "far-sign/y";
    public const string CounterKey = "far-sign/k";
    public const string DevicePrefix = "far-sign/device/";

    private const double CounterBase = 1 << 24;

    private readonly TwoTimescaleSignRule _rule;

    public FarSignStrategy(FarSignOptions options, int dimension, ServerState? state = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        if (options.Validate() is { } problem)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        Options = options;
        Dimension = dimension;
        State = state ?? new ServerState();
        _rule = new TwoTimescaleSignRule(dimension, options.Schedule, options.Directions);
    }

    public FarSignOptions Options { get; }

    public int Dimension { get; }

    public string Name => string.Create(CultureInfo.InvariantCulture,
        $"far-sign(order = {(Options.Order == DerivativeOrder.First ? "first" : "zeroth")}, K ≤ {Options.Directions}, α = {Options.Alpha}/(k + {Options.K0})^{Options.A}, β = {Options.Beta}/(k + {Options.K0})^{Options.B})");

    public ContributionKind Contribution => ContributionKind.DirectionalSigns;

    public bool AddsEncodedUpdates => false;

    public bool CountsDeclines => false;

    /// <summary>K: an answer message holds one ±1 value per direction.</summary>
    public int ContributionLength => Options.Directions;

    public ReadOnlyMemory<float> PublishedStatistics => ReadOnlyMemory<float>.Empty;

    /// <summary>What devices need, without the federation's seed (they get each version's work seed instead).</summary>
    public string AnnouncedAlgorithm => (Options with { Seed = 0 }).ToSpec();

    /// <summary>Only the directions of a stale base are needed, and they come from its seed, not its model.</summary>
    public int ModelHistory => 0;

    public ServerState State { get; }

    /// <summary>Answers applied so far (k of the schedule), as restored from <see cref="State"/>.</summary>
    public long AnswersApplied => ReadCounter(CounterKey);

    /// <summary>The work seed published with <paramref name="version"/>: devices answer that version's directions from it.</summary>
    public ulong WorkSeed(long version) => RademacherDirections.WorkSeed(Options.Seed, version);

    public VersionPlan? Plan(VersionContext context, IReadOnlyList<DeviceDescriptor> available)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new VersionPlan(context.CurrentVersion + 1, null, 1, null, context.FleetSize) { Model = context.Model };
    }

    public IVersionAggregation Begin(VersionPlan plan) => new Aggregation(this, plan ?? throw new ArgumentNullException(nameof(plan)));

    /// <summary>The last base version <paramref name="deviceId"/> answered, or −1.</summary>
    public long LastAnswered(string deviceId) => ReadCounter(DevicePrefix + deviceId) - 1;

    private long ReadCounter(string key) =>
        State.TryGet(key, out var pair) && pair.Length == 2 ? (long)pair[0] * (long)CounterBase + (long)pair[1] : 0;

    private void WriteCounter(string key, long value)
    {
        var pair = State.GetOrCreate(key, 2);
        pair[0] = (float)Math.Floor(value / CounterBase);
        pair[1] = (float)(value % (long)CounterBase);
        State.MarkChanged(key);
    }

    private sealed class Aggregation(FarSignStrategy owner, VersionPlan plan) : IVersionAggregation
    {
        private readonly byte[] _packet = new byte[SignAnswerPacket.Length(owner.Options.Directions)];
        private int _packetLength;
        private string? _device;
        private long _base;

        public VersionPlan Plan { get; } = plan;

        public int Count => _device is null ? 0 : 1;

        public int Declines => 0;

        public bool IsReady => Count == 1;

        public bool IsFull => Count == 1;

        public Refusal? Offer(in DeviceContribution contribution)
        {
            if (Plan.CheckOrigin(contribution) is { } origin)
            {
                return origin;
            }

            string device = contribution.DeviceId;

            if (contribution.BaseVersion < 0)
            {
                return new Refusal(RefusalKind.Invalid, $"base v{contribution.BaseVersion} is negative");
            }

            if (IsFull)
            {
                return new Refusal(RefusalKind.NotExpected, $"v{Plan.Version} is full");
            }

            if (contribution.IsDecline)
            {
                // Nothing to answer (a decline changes nothing in an asynchronous mode).
                return null;
            }

            long staleness = Plan.BaseVersion - contribution.BaseVersion;
            if (staleness > owner.Options.MaxStaleness)
            {
                return new Refusal(RefusalKind.TooStale, $"base v{contribution.BaseVersion} is {staleness} version(s) behind v{Plan.BaseVersion}, above the cut-off {owner.Options.MaxStaleness}");
            }

            long last = owner.LastAnswered(device);
            if (contribution.BaseVersion <= last)
            {
                return new Refusal(RefusalKind.NotExpected, contribution.BaseVersion == last
                    ? $"device {device} already answered base v{last}"
                    : $"device {device} answered base v{last} already; base v{contribution.BaseVersion} is older");
            }

            var answers = contribution.Answers.Span;
            if (answers.IsEmpty)
            {
                return new Refusal(RefusalKind.Invalid, contribution.Values.IsEmpty
                    ? $"device {device}: FAR-SIGN takes packed sign answers, and none came"
                    : $"device {device}: FAR-SIGN takes packed sign answers, not a dense update of {contribution.Values.Length} values");
            }

            if (SignAnswerPacket.Validate(answers, owner.Options.Directions) is { } problem)
            {
                return new Refusal(RefusalKind.Invalid, $"device {device}: {problem}");
            }

            // The caller owns the memory only until Offer returns.
            answers.CopyTo(_packet);
            _packetLength = answers.Length;
            _device = device;
            _base = contribution.BaseVersion;
            return null;
        }

        public DeadlineDecision AtDeadline() => Count > 0 ? DeadlineDecision.Aggregate : DeadlineDecision.Extend;

        public VersionResult Complete(Span<float> model)
        {
            if (_device is null)
            {
                throw new InvalidOperationException("No answers to apply.");
            }

            if (model.Length != owner.Dimension)
            {
                throw new ArgumentException($"The model has {model.Length} coordinates; the strategy {owner.Dimension}.", nameof(model));
            }

            var y = owner.State.GetOrCreate(EstimateKey, owner.Dimension);
            ulong key = RademacherDirections.DeviceKey(owner.WorkSeed(_base), _device);
            long k = owner._rule.Apply(model, y, owner.AnswersApplied, key, _packet.AsSpan(0, _packetLength));
            // No finiteness check is needed: bits carry no magnitude, and each answer moves x by at most α_k.
            owner.State.MarkChanged(EstimateKey);
            owner.WriteCounter(CounterKey, k);
            owner.WriteCounter(DevicePrefix + _device, _base + 1);
            return new VersionResult(Plan.Version, 1);
        }
    }
}
