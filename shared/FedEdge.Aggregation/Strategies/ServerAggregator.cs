using System.Globalization;
using System.Numerics.Tensors;
using FedEdge.Aggregation.PreAggregation;
using FedEdge.Aggregation.Rules;
using FedEdge.Aggregation.ServerOptimizers;

namespace FedEdge.Aggregation.Strategies;

/// <summary>What the server keeps of the devices' EF21 estimates (Richtárik et al. 2021; algorithms.md §1, §9).</summary>
public enum ServerEstimate
{
    /// <summary>Contributions are updates: the rule aggregates them.</summary>
    None,

    /// <summary>EF21: contributions are compressed differences c_i; g ← g + (k/n)·rule(c), the step follows g (the
    /// rule sees messages, robust-rule-on-messages).</summary>
    Shared,

    /// <summary>Byz-EF21 (Rammal, Gruntkowska, Fedin, Gorbunov, Richtárik, AISTATS 2024): the server keeps every
    /// device's g_i ← g_i + c_i and the step follows rule(g_1, …, g_n): the rule sees estimates of the true updates,
    /// not compressed messages.</summary>
    PerDevice,
}

/// <summary>How the next model is computed from a version's contributions; algorithms.md §2, §9.</summary>
public sealed record ServerAggregatorOptions
{
    /// <summary>A name of <see cref="AggregationRuleFactory.Names"/>.</summary>
    public string Rule { get; init; } = "mean";

    /// <summary>The rule's parameters; <see cref="RuleParameters.F"/> is the f assumed over the fleet, capped per
    /// version to what the version's contribution count tolerates.</summary>
    public RuleParameters Parameters { get; init; } = new();

    /// <summary>η: x ← x + η·aggregate (or the optimizer's step size).</summary>
    public double ServerLearningRate { get; init; } = 1.0;

    /// <summary>none, fedavgm, fedadam, fedyogi or fedadagrad (FedOpt, Reddi et al. ICLR 2021).</summary>
    public string ServerOptimizer { get; init; } = "none";

    /// <summary>FedAvgM's β.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>FedAdam/FedYogi/FedAdagrad: β₁, β₂ and the adaptivity τ (paper defaults).</summary>
    public double Beta1 { get; init; } = 0.9;

    public double Beta2 { get; init; } = 0.99;

    public double Adaptivity { get; init; } = 1e-3;

    public ServerEstimate Estimate { get; init; }

    /// <summary>The server optimizers by name.</summary>
    public static IReadOnlyList<string> Optimizers { get; } = ["none", "fedavgm", "fedadam", "fedyogi", "fedadagrad"];

    /// <summary>The first problem with these options, or null.</summary>
    public string? Validate()
    {
        if (!AggregationRuleFactory.Names.Contains(Rule))
        {
            return $"unknown rule '{Rule}'; expected one of {string.Join(", ", AggregationRuleFactory.Names)}";
        }

        if (!Optimizers.Contains(ServerOptimizer))
        {
            return $"unknown server optimizer '{ServerOptimizer}'; expected one of {string.Join(", ", Optimizers)}";
        }

        if (!(ServerLearningRate > 0) || !double.IsFinite(ServerLearningRate))
        {
            return $"the server learning rate must be positive (got {ServerLearningRate})";
        }

        if (Rule == "sign-vote" && (ServerOptimizer != "none" || Estimate != ServerEstimate.None))
        {
            return "sign-vote steps x ← x + η·sign(Σ sign Δ_i) itself: no server optimizer or EF21 estimate";
        }

        return Parameters.F < 0 ? $"f must be non-negative (got {Parameters.F})" : null;
    }
}

/// <summary>
/// The server side of every strategy: the version's contributions go through the rule (a streaming weighted mean
/// for "mean", a batch rule over the rows otherwise, the sign vote), then through the EF21 estimate where
/// configured, then through the server step (x ← x + η·a, or a FedOpt optimizer). The stateful parts (centered
/// clipping's centre, the optimizer's moments, EF21's g or Byz-EF21's g_i) live in <see cref="State"/>.
/// <para>
/// A contribution enters with a <em>scale</em> applied to its row (FedBuff's s(τ), FedAsync's α·s(τ), FedFix's
/// ⌈τ_i/Δt⌉) and a <em>weight</em> for the rule (sample counts in sync rounds, uniform otherwise), so a robust rule
/// replaces the mean over exactly the rows the mode's own formula averages.
/// </para>
/// </summary>
public sealed class ServerAggregator
{
    private const string CentreKey = "centered-clip/centre";
    private const string SharedEstimateKey = "ef21/g";
    private const string DeviceEstimatePrefix = "ef21/device/";
    private const string OptimizerPrefix = "optimizer/";

    private readonly IServerOptimizer? _optimizer;
    private bool _optimizerLoaded;

    public ServerAggregator(ServerAggregatorOptions options, int dimension, ServerState? state = null)
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
        _optimizer = options.ServerOptimizer switch
        {
            "fedavgm" => new FedAvgMOptimizer(options.ServerLearningRate, options.Momentum),
            "fedadam" => new FedAdamOptimizer(options.ServerLearningRate, options.Beta1, options.Beta2, options.Adaptivity),
            "fedyogi" => new FedYogiOptimizer(options.ServerLearningRate, options.Beta1, options.Beta2, options.Adaptivity),
            "fedadagrad" => new FedAdagradOptimizer(options.ServerLearningRate, options.Beta1, options.Adaptivity),
            _ => null,
        };
    }

    public ServerAggregatorOptions Options { get; }

    public int Dimension { get; }

    public ServerState State { get; }

    /// <summary>Whether the rule only sums (the weighted mean, no per-device estimates): contributions may stay encoded.</summary>
    public bool Streams => Options.Rule == "mean" && Options.Parameters.BucketSize <= 1 && Options.Estimate != ServerEstimate.PerDevice;

    public string Name
    {
        get
        {
            string rule = Options.Parameters.F > 0 && Options.Rule is not ("mean" or "median" or "sign-vote")
                ? string.Create(CultureInfo.InvariantCulture, $"{Options.Rule}(f≤{Options.Parameters.F})")
                : Options.Rule;
            string estimate = Options.Estimate switch
            {
                ServerEstimate.Shared => " over EF21 messages",
                ServerEstimate.PerDevice => " over Byz-EF21 estimates",
                _ => "",
            };
            string step = _optimizer is null
                ? (Options.ServerLearningRate == 1.0 ? "" : string.Create(CultureInfo.InvariantCulture, $", η = {Options.ServerLearningRate}"))
                : string.Create(CultureInfo.InvariantCulture, $", {_optimizer.Name} η = {Options.ServerLearningRate}");
            return rule + estimate + step;
        }
    }

    /// <summary>A collection of one version's contributions; <paramref name="capacity"/> sizes the batch block.</summary>
    public Collector Begin(int capacity) => new(this, Math.Max(1, capacity));

    /// <summary>
    /// The rule's f for <paramref name="count"/> rows: the configured f, capped so the rule can still run (n &gt; 2f,
    /// Krum n &gt; 2f + 2). Asynchronous buffers of K &lt; n rows need the cap: attackers may all land in one buffer,
    /// so f is not scaled down in proportion to K/n, only to what K rows can tolerate.
    /// </summary>
    public int EffectiveF(int count)
    {
        int limit = Options.Rule.EndsWith("krum", StringComparison.Ordinal) ? (count - 3) / 2 : (count - 1) / 2;
        return Math.Clamp(Options.Parameters.F, 0, Math.Max(0, limit));
    }

    private void Step(Span<float> model, ReadOnlySpan<float> aggregate)
    {
        if (_optimizer is null)
        {
            TensorPrimitives.MultiplyAdd(aggregate, (float)Options.ServerLearningRate, model, model);
            return;
        }

        if (!_optimizerLoaded)
        {
            // The moments persisted with the last version (restored into State on activation), or fresh ones.
            _optimizer.LoadFrom(State, OptimizerPrefix, Dimension);
            _optimizerLoaded = true;
        }

        _optimizer.Apply(model, aggregate);
        _optimizer.SaveTo(State, OptimizerPrefix);
    }

    private void Aggregate(UpdateBatch batch, Span<float> result)
    {
        var parameters = Options.Parameters with { F = EffectiveF(batch.Count) };
        var rule = AggregationRuleFactory.Create(Options.Rule, parameters, batch.Count);
        var clipping = FindClipping(rule);
        if (clipping is not null && State.TryGet(CentreKey, out var centre))
        {
            // Karimireddy et al.: v₀ is the previous aggregate, kept across versions and restarts.
            clipping.SetCentre(centre);
        }

        rule.Aggregate(batch, result);
        if (clipping is not null)
        {
            result.CopyTo(State.GetOrCreate(CentreKey, Dimension));
            State.MarkChanged(CentreKey);
        }
    }

    private static CenteredClippingRule? FindClipping(IAggregationRule rule) => rule switch
    {
        CenteredClippingRule clipping => clipping,
        PreAggregatedRule pre => FindClipping(pre.Rule),
        _ => null,
    };

    /// <summary>
    /// One version's contributions: a running weighted sum (streaming), rows (batch rules), votes (sign vote), or
    /// the per-device estimates they move (Byz-EF21). Add validates first and leaves everything unchanged on a
    /// refusal.
    /// </summary>
    public sealed class Collector
    {
        private readonly ServerAggregator _owner;
        private readonly UpdateValidator _validator;
        private readonly float[]? _sum;
        private readonly SignMajorityVoteAccumulator? _votes;
        private readonly List<float> _weights = [];
        private readonly List<string> _estimateDevices = [];
        private float[] _rows = [];
        private double _weightSum;

        internal Collector(ServerAggregator owner, int capacity)
        {
            _owner = owner;
            _validator = new UpdateValidator(owner.Dimension);
            if (owner.Options.Rule == "sign-vote")
            {
                _votes = new SignMajorityVoteAccumulator(owner.Dimension, Math.Max(capacity, 1024));
            }
            else if (owner.Streams)
            {
                _sum = new float[owner.Dimension];
            }
            else if (owner.Options.Estimate != ServerEstimate.PerDevice)
            {
                _rows = new float[(long)capacity * owner.Dimension];
            }
        }

        /// <summary>Contributions taken.</summary>
        public int Count { get; private set; }

        /// <summary>Takes Δ_i·<paramref name="scale"/> with rule weight <paramref name="weight"/>; null, or why not.</summary>
        public string? Add(string deviceId, ReadOnlySpan<float> values, float scale, float weight)
        {
            var check = _validator.Validate(values, weight);
            if (!check.IsValid)
            {
                return check.Reason;
            }

            if (_votes is not null)
            {
                _votes.Add(values);
            }
            else if (_sum is not null)
            {
                TensorPrimitives.MultiplyAdd(values, scale * weight, _sum, _sum);
                _weightSum += weight;
            }
            else if (_owner.Options.Estimate == ServerEstimate.PerDevice)
            {
                // Byz-EF21: g_i ← g_i + c_i; the rule later sees every device's g_i.
                string key = DeviceEstimatePrefix + deviceId;
                var estimate = _owner.State.GetOrCreate(key, _owner.Dimension);
                TensorPrimitives.MultiplyAdd(values, scale, estimate, estimate);
                _owner.State.MarkChanged(key);
                _estimateDevices.Add(deviceId);
            }
            else
            {
                int d = _owner.Dimension;
                long offset = (long)Count * d;
                if (offset + d > _rows.Length)
                {
                    Array.Resize(ref _rows, (int)Math.Max(_rows.Length * 2L, offset + d));
                }

                TensorPrimitives.Multiply(values, scale, _rows.AsSpan((int)offset, d));
                _weights.Add(weight);
            }

            Count++;
            return null;
        }

        /// <summary>Adds an encoded update straight into the running sum (only when the aggregator <see cref="Streams"/>).</summary>
        public string? Add(IAccumulableUpdate update, float scale, float weight)
        {
            ArgumentNullException.ThrowIfNull(update);
            if (_sum is null)
            {
                throw new InvalidOperationException($"{_owner.Options.Rule} needs the decoded rows; only the mean adds encoded updates.");
            }

            var check = _validator.ValidateShape(update.Dimension, weight);
            if (!check.IsValid)
            {
                return check.Reason;
            }

            if (update.AddTo(_sum, scale * weight) is { } problem)
            {
                return problem;
            }

            _weightSum += weight;
            Count++;
            return null;
        }

        /// <summary>
        /// Aggregates, moves the EF21 estimate, steps the model: x ← step(x, <paramref name="factor"/>·a) where a is the
        /// rule's result (FedFix's factor is k/n; 1 elsewhere). <paramref name="fleetSize"/> is EF21's n.
        /// </summary>
        public void Complete(Span<float> model, int fleetSize, double factor = 1.0)
        {
            if (Count == 0)
            {
                throw new InvalidOperationException("No contribution to aggregate.");
            }

            int d = _owner.Dimension;
            var aggregate = new float[d];
            if (_votes is not null)
            {
                _votes.Complete(aggregate);
            }
            else if (_sum is not null)
            {
                TensorPrimitives.Multiply(_sum, (float)(1.0 / _weightSum), aggregate);
            }
            else if (_owner.Options.Estimate == ServerEstimate.PerDevice)
            {
                var keys = _owner.State.Names.Where(n => n.StartsWith(DeviceEstimatePrefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
                var estimates = new float[(long)keys.Length * d];
                for (int i = 0; i < keys.Length; i++)
                {
                    _owner.State.TryGet(keys[i], out var estimate);
                    estimate.CopyTo(estimates.AsSpan(i * d, d));
                }

                _owner.Aggregate(new UpdateBatch(estimates, keys.Length, d), aggregate);
            }
            else
            {
                _owner.Aggregate(new UpdateBatch(_rows.AsMemory(0, Count * d), Count, d, _weights.ToArray()), aggregate);
            }

            if (factor != 1.0)
            {
                TensorPrimitives.Multiply(aggregate, (float)factor, aggregate);
            }

            if (_owner.Options.Estimate == ServerEstimate.Shared)
            {
                // EF21 (Richtárik et al. 2021): g ← g + (k/n)·a over the k messages of n devices; the step follows g.
                var g = _owner.State.GetOrCreate(SharedEstimateKey, d);
                TensorPrimitives.MultiplyAdd(aggregate, (float)Count / Math.Max(Count, fleetSize), g, g);
                _owner.State.MarkChanged(SharedEstimateKey);
                g.CopyTo(aggregate, 0);
            }

            if (UpdateValidator.IndexOfNonFinite(aggregate) is var bad and >= 0)
            {
                throw new InvalidUpdateException(null, $"the aggregate's {UpdateValidator.DescribeNonFinite(aggregate, bad)}");
            }

            _owner.Step(model, aggregate);
        }
    }
}
