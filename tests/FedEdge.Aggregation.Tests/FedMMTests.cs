using FedEdge.Aggregation.Strategies;
using FedEdge.Aggregation.Surrogates;
using FedEdge.Compression;
using FedEdge.Protocol;

namespace FedEdge.Aggregation.Tests;

/// <summary>FedMM (algorithms.md §5): the surrogates' maps against closed forms, the device and server rules against
/// hand-computed sequences, the strategy's refusals and its state across a restart.</summary>
public class FedMMTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    /// <summary>f_i(θ) = ½‖θ − c_i‖² (L = 1): the quadratic surrogate's statistic is s = θ − (θ − c_i) = c_i.</summary>
    private sealed class CentredObjective(float[] centre) : IDeviceObjective
    {
        public int SampleCount => 1;

        public int FeatureSize => centre.Length;

        public ReadOnlySpan<float> Features => centre;

        public double Gradient(ReadOnlySpan<float> parameters, Span<float> gradient)
        {
            double loss = 0;
            for (int j = 0; j < centre.Length; j++)
            {
                gradient[j] = parameters[j] - centre[j];
                loss += 0.5 * gradient[j] * gradient[j];
            }

            return loss;
        }
    }

    [Fact]
    public void QuadraticMapIsTheL1ProxOfTheScaledStatistic()
    {
        var surrogate = new QuadraticSurrogate(3, smoothness: 2, l1: 1);
        var theta = new float[3];
        surrogate.Map([5, -1, -4], theta);
        Assert.Equal([2f, 0f, -1.5f], theta);
        new QuadraticSurrogate(3, 2).Map([5, -1, -4], theta);
        Assert.Equal([2.5f, -0.5f, -2f], theta);
        Assert.Equal(1 * (2.5 + 0.5 + 2), new QuadraticSurrogate(3, 2, 1).Regularizer(theta), 6);
    }

    [Fact]
    public void OneQuadraticMMStepSolvesTheLassoWhenLIsTheExactCurvature()
    {
        // f = ½‖θ − c‖², L = 1: T(s̄(θ)) = soft(c, λ), the exact minimiser of f + λ‖θ‖₁, from any θ.
        var surrogate = new QuadraticSurrogate(3, smoothness: 1, l1: 0.5);
        var s = new float[3];
        surrogate.Statistic([7, -3, 0.25f], new CentredObjective([2, 0.25f, -1]), s);
        var theta = new float[3];
        surrogate.Map(s, theta);
        Assert.Equal([1.5f, 0f, -0.5f], theta);
    }

    [Fact]
    public void LogisticDiagonalMapIsSoftThresholdPerCoordinate()
    {
        // p = 1, K = 2: θ = [w(class 0), w(class 1), bias 0, bias 1]; h = [h_input, h_bias].
        var surrogate = new LogisticCurvatureSurrogate(featureCount: 1, classCount: 2, l1: 1);
        Assert.Equal(4, surrogate.ParameterCount);
        Assert.Equal(6, surrogate.StatisticLength);
        var theta = new float[4];
        surrogate.Map([2, 4, 5, -1, -4, 8], theta);
        // soft(5,1)/2, soft(−1,1)/2, soft(−4,1)/4, soft(8,1)/4.
        Assert.Equal([2f, 0f, -0.75f, 1.75f], theta);

        var wide = new LogisticCurvatureSurrogate(featureCount: 3, classCount: 2);
        Assert.Equal([0, 1, 2, 0, 1, 2, 3, 3], Enumerable.Range(0, 8).Select(wide.CurvatureIndex));
    }

    [Fact]
    public void LogisticCurvatureIsHalfTheMeanOfAbsInputTimesL1NormAfterStandardisation()
    {
        var h = new float[2];
        LogisticCurvatureSurrogate.Curvature([1, -2], 1, 0f, 1f, h);
        // x̃ = (1, 1), (−2, 1): ‖x̃‖₁ = 2, 3; h = ½·mean(|x̃_i|·‖x̃‖₁).
        Assert.Equal([0.5f * (1 * 2 + 2 * 3) / 2, 0.5f * (2 + 3) / 2], h);
        LogisticCurvatureSurrogate.Curvature([1, -2], 1, 1f, 2f, h);
        // x = (raw − 1)/2 = 0, −1.5.
        Assert.Equal([0.5f * (0 + 1.5f * 2.5f) / 2, 0.5f * (1 + 2.5f) / 2], h);
    }

    [Fact]
    public void SparseCodesOfAnOrthonormalDictionaryAreTheSoftThresholdedInput()
    {
        float[] identity = [1, 0, 0, 0, 1, 0, 0, 0, 1];
        var coder = new SparseCoder(identity, 3, 3, penalty: 0.5, iterations: 50);
        var code = new double[3];
        double value = coder.Encode([2, -0.25f, -1], code);
        Assert.Equal(1.5, code[0], 6);
        Assert.Equal(0, code[1], 6);
        Assert.Equal(-0.5, code[2], 6);
        // ½‖x − α‖² + λ‖α‖₁ = ½(0.25 + 0.0625 + 0.25) + 0.5·2.
        Assert.Equal(0.5 * (0.25 + 0.0625 + 0.25) + 1.0, value, 6);
    }

    private static (float[] D, float[] Statistic) DictionaryProblem(double columnNorm, int p, int k, int seed)
    {
        var random = new Random(seed);
        var d = new float[p * k];
        for (int j = 0; j < k; j++)
        {
            var column = Enumerable.Range(0, p).Select(_ => random.NextDouble() - 0.5).ToArray();
            double norm = Math.Sqrt(column.Sum(v => v * v));
            for (int t = 0; t < p; t++)
            {
                d[j * p + t] = (float)(columnNorm * column[t] / norm);
            }
        }

        // A = MᵀM/k + I (≻ 0), B = D·A.
        var m = Enumerable.Range(0, k * k).Select(_ => random.NextDouble() - 0.5).ToArray();
        var a = new double[k * k];
        for (int i = 0; i < k; i++)
        {
            for (int j = 0; j < k; j++)
            {
                double v = i == j ? 1 : 0;
                for (int t = 0; t < k; t++)
                {
                    v += m[t * k + i] * m[t * k + j] / k;
                }

                a[i * k + j] = v;
            }
        }

        var s = new float[k * k + p * k];
        for (int i = 0; i < k * k; i++)
        {
            s[i] = (float)a[i];
        }

        for (int j = 0; j < k; j++)
        {
            for (int t = 0; t < p; t++)
            {
                double v = 0;
                for (int i = 0; i < k; i++)
                {
                    v += d[i * p + t] * a[i * k + j];
                }

                s[k * k + j * p + t] = (float)v;
            }
        }

        return (d, s);
    }

    [Fact]
    public void DictionaryUpdateIsBTimesAInverseWhenTheConstraintIsInactive()
    {
        const int p = 5, k = 3;
        var (expected, statistic) = DictionaryProblem(0.4, p, k, seed: 1);
        var surrogate = new DictionarySurrogate(p, k, penalty: 0.1);
        var d = new float[p * k];
        surrogate.Map(statistic, d);
        for (int i = 0; i < d.Length; i++)
        {
            Assert.Equal(expected[i], d[i], 4);
        }
    }

    [Fact]
    public void DictionaryUpdateMeetsTheKktConditionsWhenTheConstraintIsActive()
    {
        const int p = 5, k = 3;
        var (_, statistic) = DictionaryProblem(3.0, p, k, seed: 2);
        var surrogate = new DictionarySurrogate(p, k, penalty: 0.1);
        var d = new float[p * k];
        surrogate.Map(statistic, d);
        int active = 0;
        for (int j = 0; j < k; j++)
        {
            // G_j = (D·A − B)_j; KKT: G_j + μ_j d_j = 0, μ_j ≥ 0, μ_j(‖d_j‖ − 1) = 0.
            var g = new double[p];
            for (int t = 0; t < p; t++)
            {
                double v = -statistic[k * k + j * p + t];
                for (int i = 0; i < k; i++)
                {
                    v += d[i * p + t] * statistic[i * k + j];
                }

                g[t] = v;
            }

            double norm = Math.Sqrt(Enumerable.Range(0, p).Sum(t => (double)d[j * p + t] * d[j * p + t]));
            Assert.True(norm <= 1 + 1e-5, $"atom {j} has norm {norm}");
            double mu = norm > 1 - 1e-4 ? -Enumerable.Range(0, p).Sum(t => g[t] * d[j * p + t]) : 0;
            active += mu > 0 ? 1 : 0;
            Assert.True(mu >= -1e-4, $"μ_{j} = {mu}");
            for (int t = 0; t < p; t++)
            {
                Assert.True(Math.Abs(g[t] + mu * d[j * p + t]) < 1e-3, $"atom {j}: KKT residual {g[t] + mu * d[j * p + t]}");
            }
        }

        Assert.True(active > 0, "the test problem should make the norm constraint active");
    }

    [Fact]
    public void CentralisedDictionaryMMStepsDoNotIncreaseTheObjective()
    {
        const int p = 16, k = 6;
        var random = new Random(3);
        var patches = Enumerable.Range(0, 200 * p).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var surrogate = new DictionarySurrogate(p, k, penalty: 0.05, codingIterations: 300);
        var d = surrogate.InitialDictionary(patches, seed: 4);
        var objective = new PatchObjective(patches, p);
        var s = new float[surrogate.StatisticLength];
        double previous = surrogate.Objective(d, patches);
        double first = previous;
        for (int step = 0; step < 5; step++)
        {
            surrogate.Statistic(d, objective, s);
            surrogate.Map(s, d);
            double value = surrogate.Objective(d, patches);
            Assert.True(value <= previous + 1e-5, $"step {step}: {value} > {previous}");
            previous = value;
        }

        Assert.True(previous < first * 0.99, $"5 MM steps moved the objective only from {first} to {previous}");
    }

    [Fact]
    public void ControlVariateFollowsTheWorkedExampleAndSurvivesItsBytes()
    {
        var variate = new FedMMControlVariate(1, alpha: 0.5);
        var delta = new float[1];
        variate.Difference([4], [1], delta);
        Assert.Equal([3f], delta);
        variate.Apply(delta);
        Assert.Equal([1.5f], variate.Values);
        variate.Difference([4], [2.5f], delta);
        Assert.Equal([0f], delta);
        variate.Difference([4], [], delta);
        Assert.Equal([4f], delta); // bootstrap: Δ = S

        var restored = FedMMControlVariate.FromBytes(variate.ToBytes(), 1);
        Assert.Equal(variate.Values, restored.Values);
        Assert.Equal(0.5, restored.Alpha);
        Assert.Contains("2 values expected", Assert.Throws<InvalidDataException>(() => FedMMControlVariate.FromBytes(variate.ToBytes(), 2)).Message);
        var corrupt = variate.ToBytes();
        corrupt[^1] = 0xFF;
        corrupt[^2] = 0xFF;
        Assert.Contains("not finite", Assert.Throws<InvalidDataException>(() => FedMMControlVariate.FromBytes(corrupt, 1)).Message);
    }

    [Fact]
    public void ServerRuleFollowsTheWorkedExample()
    {
        float[] estimate = [1], variate = [0];
        FedMMServerRule.Apply(estimate, variate, [1], participation: 0.5, alpha: 0.5, gamma: 1);
        Assert.Equal([3f], estimate);
        Assert.Equal([0.5f], variate);
    }

    private static FedMMStrategy Strategy(double p = 1, double gamma = 1, double alpha = 0.5, ServerState? state = null, int d = 2) =>
        new(new FedMMOptions { Smoothness = 1, Participation = p, Gamma = gamma, Weighting = FedMMWeighting.Uniform },
            new QuadraticSurrogate(d, 1), alpha, new SyncRoundOptions { Seed = 3 }, state);

    private static VersionContext Context(long version) => new(version, T0, 2);

    private static readonly DeviceDescriptor[] Pair = [new("a", 10), new("b", 30)];

    [Fact]
    public void StrategyFollowsAHandComputedSequenceWithTopKAndPartialParticipation()
    {
        // f_a = ½‖θ − (3, 0)‖², f_b = ½‖θ − (0, 4)‖², L = 1: S_i = c_i. π = ½, top-1 of 2 (α = 1/(1 + ω) = ½), γ = ½.
        var codec = UpdateCodecs.Parse("topk:0.5");
        Assert.Equal(0.5, CodecVariance.MaxAlpha(codec, 2));
        var centres = new Dictionary<string, float[]> { ["a"] = [3, 0], ["b"] = [0, 4] };
        var devices = centres.ToDictionary(c => c.Key, _ => new FedMMControlVariate(2, 0.5));
        var strategy = Strategy(p: 0.5, gamma: 0.5);
        var surrogate = strategy.Surrogate;
        float[] model = [0, 0];

        float[] Answer(string device, long version)
        {
            var s = new float[2];
            surrogate.Statistic(model, new CentredObjective(centres[device]), s);
            var delta = new float[2];
            devices[device].Difference(s, strategy.StatisticEstimate.Span, delta);
            codec.Decode(codec.Encode(delta), out var decoded);
            if (strategy.IsBootstrapped)
            {
                devices[device].Apply(decoded!);
            }

            return decoded!;
        }

        // Bootstrap asks both: Ŝ = mean c = (1.5, 2), θ = Ŝ (L = 1, λ = 0). top-1 keeps the larger coordinate only.
        var plan = strategy.Plan(Context(0), Pair)!;
        Assert.Equal(2, plan.Participants!.Count);
        var version = strategy.Begin(plan);
        foreach (var device in new[] { "a", "b" })
        {
            Assert.Null(version.Offer(DeviceContribution.Update(device, Answer(device, 0), 1, 0)));
        }

        Assert.True(version.IsReady);
        version.Complete(model);
        // Q(S_a) = (3, 0), Q(S_b) = (0, 4): Ŝ₀ = (1.5, 2).
        Assert.Equal([1.5f, 2f], strategy.StatisticEstimate.ToArray());
        Assert.Equal([1.5f, 2f], model);

        // Version 2 asks one of two (q = ½). Δ_a = (1.5, −2) → Q = (0, −2); Δ_b = (−1.5, 2) → Q = (0, 2).
        plan = strategy.Plan(Context(1), Pair)!;
        var asked = Assert.Single(plan.Participants!);
        version = strategy.Begin(plan);
        Assert.Null(version.Offer(DeviceContribution.Update(asked, Answer(asked, 1), 1, 1)));
        version.Complete(model);
        // sum = ½·Q, H = 0 + 2·sum = Q, Ŝ = Ŝ + ½·Q, V = ½·sum.
        float sign = asked == "a" ? -1 : 1;
        Assert.Equal([1.5f, 2f + sign], strategy.StatisticEstimate.ToArray());
        Assert.Equal([1.5f, 2f + sign], model);
        Assert.True(strategy.State.TryGet(FedMMStrategy.VariateKey, out var v));
        Assert.Equal([0f, 0.5f * sign], v);
        Assert.Equal([0f, sign], devices[asked].Values); // V_i = α·Q(Δ_i)
    }

    [Fact]
    public void StrategyRefusesWithReasonsAndLeavesTheSumUnchanged()
    {
        var strategy = Strategy();
        var version = strategy.Begin(strategy.Plan(Context(0), Pair)!);
        Assert.Contains("m = 2", version.Offer(DeviceContribution.Update("a", new float[3], 1, 0))!.Reason);
        Assert.Contains("NaN", version.Offer(DeviceContribution.Update("a", new float[] { 1, float.NaN }, 1, 0))!.Reason);
        Assert.Equal(RefusalKind.NotExpected, version.Offer(DeviceContribution.Update("z", new float[2], 1, 0))!.Kind);
        Assert.Equal(RefusalKind.Invalid, version.Offer(DeviceContribution.Update("a", new float[2], 1, 5))!.Kind);
        Assert.Null(version.Offer(DeviceContribution.Update("a", new float[] { 2, 2 }, 1, 0)));
        Assert.Contains("already answered", version.Offer(DeviceContribution.Update("a", new float[2], 1, 0))!.Reason);
        Assert.False(version.IsReady);
        Assert.Null(version.Offer(DeviceContribution.Update("b", new float[] { 4, 4 }, 1, 0)));
        float[] model = [0, 0];
        version.Complete(model);
        Assert.Equal([3f, 3f], model);

        var next = strategy.Begin(strategy.Plan(Context(1), Pair)!);
        Assert.Equal(RefusalKind.TooStale, next.Offer(DeviceContribution.Update("a", new float[2], 1, 0))!.Kind);
        Assert.Throws<InvalidOperationException>(() => next.Complete(model));
    }

    [Fact]
    public void SampleWeightingUsesTheFleetsSampleCounts()
    {
        var strategy = new FedMMStrategy(new FedMMOptions { Smoothness = 1 }, new QuadraticSurrogate(1, 1), 1.0);
        var version = strategy.Begin(strategy.Plan(Context(0), Pair)!);
        version.Offer(DeviceContribution.Update("a", new float[] { 4 }, 10, 0));
        version.Offer(DeviceContribution.Update("b", new float[] { 8 }, 30, 0));
        float[] model = [0];
        version.Complete(model);
        Assert.Equal([7f], model); // (10·4 + 30·8)/40
    }

    [Fact]
    public void ARestartFromThePersistedStateGivesTheSameNextVersion()
    {
        var first = Strategy(p: 0.5, gamma: 0.5);
        float[] model = [0, 0];
        var persisted = new Dictionary<string, float[]>();
        void RunVersion(FedMMStrategy strategy, long current, float[] target, float[] offer)
        {
            var plan = strategy.Plan(Context(current), Pair)!;
            var version = strategy.Begin(plan);
            foreach (var device in plan.Participants!)
            {
                Assert.Null(version.Offer(DeviceContribution.Update(device, offer, 1, current)));
            }

            version.Complete(target);
        }

        RunVersion(first, 0, model, [2, 6]);
        RunVersion(first, 1, model, [1, -1]);
        foreach (var (name, vector) in first.State.TakeChanged())
        {
            persisted[name] = vector.ToArray();
        }

        var restoredState = new ServerState();
        foreach (var (name, vector) in persisted)
        {
            restoredState.Restore(name, vector);
        }

        var second = Strategy(p: 0.5, gamma: 0.5, state: restoredState);
        Assert.True(second.IsBootstrapped);
        var copy = model.ToArray();
        RunVersion(first, 2, model, [0.5f, 3]);
        RunVersion(second, 2, copy, [0.5f, 3]);
        Assert.Equal(model, copy);
        Assert.Equal(first.StatisticEstimate.ToArray(), second.StatisticEstimate.ToArray());
        Assert.True(first.State.TryGet(FedMMStrategy.VariateKey, out var v1));
        Assert.True(second.State.TryGet(FedMMStrategy.VariateKey, out var v2));
        Assert.Equal(v1, v2);
        Assert.NotEqual(new float[] { 0, 0 }, v1);
    }

    [Fact]
    public void OptionsParseTheSpecAndNameABadKey()
    {
        var options = FedMMOptions.Parse(AlgorithmSpec.Parse("fedmm:surrogate=logistic,l1=0.0001,alpha=0.5,gamma=0.5,p=0.25,weights=uniform"));
        Assert.Equal(SurrogateKind.Logistic, options.Surrogate);
        Assert.Equal(0.0001, options.L1);
        Assert.Equal(0.5, options.Alpha);
        Assert.Equal(0.25, options.Participation);
        Assert.Equal(FedMMWeighting.Uniform, options.Weighting);
        Assert.Equal(options, FedMMOptions.Parse(AlgorithmSpec.Parse(options.ToString())));
        Assert.IsType<LogisticCurvatureSurrogate>(options.CreateSurrogate(7850, 784, 10));
        Assert.Equal(7850 + 785, options.CreateSurrogate(7850, 784, 10).StatisticLength);

        Assert.Contains("'lr'", Assert.Throws<FormatException>(() => FedMMOptions.Parse(AlgorithmSpec.Parse("fedmm:lr=1"))).Message);
        Assert.Contains("surrogate=em", Assert.Throws<FormatException>(() => FedMMOptions.Parse(AlgorithmSpec.Parse("fedmm:surrogate=em"))).Message);
        Assert.Contains("l=", Assert.Throws<FormatException>(() => FedMMOptions.Parse(AlgorithmSpec.Parse("fedmm:surrogate=quadratic"))).Message);
        Assert.Contains("p=1.5", Assert.Throws<FormatException>(() => FedMMOptions.Parse(AlgorithmSpec.Parse("fedmm:surrogate=logistic,p=1.5"))).Message);
        Assert.Contains("gamma", Assert.Throws<FormatException>(() => FedMMOptions.Parse(AlgorithmSpec.Parse("fedmm:surrogate=logistic,gamma=x"))).Message);
        Assert.Equal(400.0, FedMMOptions.Parse(AlgorithmSpec.Parse("fedmm:surrogate=quadratic,L=400")).Smoothness);
        Assert.Contains("exceeds", Assert.Throws<ArgumentException>(() => options.ResolveAlpha(UpdateCodecs.Parse("topk:0.01"), 1000)).Message);
        Assert.Equal(0.5, options.ResolveAlpha(UpdateCodecs.Parse("fp16"), 1000));
    }

    [Fact]
    public void CodecVarianceFactors()
    {
        Assert.Equal(0, CodecVariance.Omega(UpdateCodecs.Parse("fp32"), 100));
        Assert.True(CodecVariance.Omega(UpdateCodecs.Parse("fp16"), 100) < 1e-6);
        Assert.Equal(99, CodecVariance.Omega(UpdateCodecs.Parse("topk:0.01"), 1000), 9);
        Assert.Equal(2 / Math.PI, CodecVariance.MaxAlpha(UpdateCodecs.Parse("sign"), 1000), 9);
    }
}
