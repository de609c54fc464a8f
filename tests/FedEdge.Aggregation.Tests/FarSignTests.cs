using FedEdge.Aggregation.SignedDirections;
using FedEdge.Aggregation.Strategies;

namespace FedEdge.Aggregation.Tests;

/// <summary>FAR-SIGN (algorithms.md §4 [design]): directions, packets, the device's answers, the two-timescale rule and the strategy.</summary>
public class FarSignTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    private static float[] Direction(ulong workSeed, string device, long index, int d)
    {
        var words = new ulong[RademacherDirections.WordCount(d)];
        RademacherDirections.Generate(RademacherDirections.DeviceKey(workSeed, device), index, words);
        var u = new float[d];
        RademacherDirections.CopyTo(words, u);
        return u;
    }

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += (double)a[i] * b[i];
        }

        return sum;
    }

    [Fact]
    public void TheGeneratorIsPinnedByAGoldenVector()
    {
        // Edge (arm64) and cloud (x64) regenerate these bits for every version ever published: a change of generator
        // must fail here, not in the field.
        // The values were checked against an independent Python implementation of the documented construction.
        Assert.Equal(0xBA280442A67F6740UL, RademacherDirections.WorkSeed(42, 7));
        ulong key = RademacherDirections.DeviceKey(RademacherDirections.WorkSeed(42, 7), "dev-0");
        Assert.Equal(0x5F4A3BDE86CE07B8UL, key);
        var words = new ulong[2];
        RademacherDirections.Generate(key, 3, words);
        Assert.Equal(new ulong[] { 0x7D3816D5BD6CB47CUL, 0x4B51C34C6A0FA8FAUL }, words);
        Assert.Equal(0x5692161D100B05E5UL, RademacherDirections.Mix(1));
        // Coordinate 0 is bit 0 of word 0 (0x…7C: bit 0 clear, +1/√d), coordinate 2 is bit 2 (set, −1/√d).
        Assert.False(RademacherDirections.IsNegative(words, 0));
        Assert.True(RademacherDirections.IsNegative(words, 2));
    }

    [Fact]
    public void DirectionsAreReproducibleBalancedAndIndependentAcrossDevicesAndIndices()
    {
        const int d = 10_000;
        ulong seed = RademacherDirections.WorkSeed(9, 3);
        var u = Direction(seed, "dev-a", 0, d);
        Assert.Equal(u, Direction(seed, "dev-a", 0, d));
        Assert.All(u, v => Assert.Equal(1 / Math.Sqrt(d), Math.Abs(v), 6));
        Assert.InRange(u.Count(v => v < 0), d / 2 - 200, d / 2 + 200); // 4σ of Binomial(d, ½)

        // Correlations of independent directions are ~N(0, 1/d): within 4/√d = 0.04, and their mean near 0.
        double sum = 0;
        for (int k = 1; k <= 40; k++)
        {
            foreach (var other in new[] { Direction(seed, "dev-a", k, d), Direction(seed, $"dev-{k}", 0, d), Direction(RademacherDirections.WorkSeed(9, 3 + k), "dev-a", 0, d) })
            {
                double correlation = Dot(u, other);
                Assert.InRange(correlation, -0.04, 0.04);
                sum += correlation;
            }
        }

        Assert.InRange(sum / 120, -0.01, 0.01);
        Assert.NotEqual(RademacherDirections.DeviceKey(seed, "ab"), RademacherDirections.DeviceKey(seed, "ba"));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(1003)]
    public void KernelsMatchTheExpandedDirection(int d)
    {
        var u = Direction(5, "dev", 2, d);
        var words = new ulong[RademacherDirections.WordCount(d)];
        RademacherDirections.Generate(RademacherDirections.DeviceKey(5, "dev"), 2, words);
        var v = Enumerable.Range(0, d).Select(i => (float)Math.Sin(i + 1)).ToArray();
        Assert.Equal(Dot(u, v), RademacherDirections.Dot(words, v), 4);

        var a = v.ToArray();
        var b = v.Select(x => -x).ToArray();
        RademacherDirections.MultiplyAdd(words, 2.5f, a, -0.5f, b);
        for (int i = 0; i < d; i++)
        {
            Assert.Equal(v[i] + 2.5f * u[i], a[i], 5);
            Assert.Equal(-v[i] - 0.5f * u[i], b[i], 5);
        }
    }

    [Fact]
    public void PacketsRoundTripAndMatchTheWorkedExample()
    {
        var example = new byte[SignAnswerPacket.Length(3)];
        SignAnswerPacket.Start(example, 3);
        SignAnswerPacket.Set(example, 0, true);
        SignAnswerPacket.Set(example, 2, true);
        Assert.Equal(new byte[] { 3, 0, 5 }, example);

        var random = new Random(4);
        foreach (int count in new[] { 1, 8, 13, 1024 })
        {
            var signs = Enumerable.Range(0, count).Select(_ => random.Next(2) == 1).ToArray();
            var packet = new byte[SignAnswerPacket.Length(count)];
            SignAnswerPacket.Start(packet, count);
            for (int k = 0; k < count; k++)
            {
                SignAnswerPacket.Set(packet, k, signs[k]);
            }

            Assert.Null(SignAnswerPacket.Validate(packet, 1024));
            Assert.Equal(count, SignAnswerPacket.Count(packet));
            Assert.Equal(signs.Select(s => s ? 1 : -1), Enumerable.Range(0, count).Select(k => SignAnswerPacket.Sign(packet, k)));
        }
    }

    [Fact]
    public void MalformedPacketsAreRefusedWithReasons()
    {
        Assert.Contains("header", SignAnswerPacket.Validate([3], 16));
        Assert.Contains("no answers", SignAnswerPacket.Validate([0, 0], 16));
        Assert.Contains("above the 16 directions", SignAnswerPacket.Validate([17, 0, 0, 0, 0], 16));
        Assert.Contains("3 answers take 3", SignAnswerPacket.Validate([3, 0, 5, 0], 16));
        Assert.Contains("3 answers take 3", SignAnswerPacket.Validate([3, 0], 16));
        Assert.Contains("padding", SignAnswerPacket.Validate([3, 0, 0x0D], 16));
        Assert.Null(SignAnswerPacket.Validate([8, 0, 0xFF], 16));
    }

    [Fact]
    public void FirstOrderAnswersAreTheSignsOfTheDirectionalDerivatives()
    {
        const int d = 300;
        var gradient = Enumerable.Range(0, d).Select(i => (float)Math.Cos(0.1 * i)).ToArray();
        var answerer = new SignAnswerer(d);
        var packet = new byte[SignAnswerPacket.Length(100)];
        Assert.Equal(packet.Length, answerer.AnswerFirstOrder(77, "dev-3", gradient, 100, packet));
        for (int k = 0; k < 100; k++)
        {
            Assert.Equal(Math.Sign(Dot(gradient, Direction(77, "dev-3", k, d))), SignAnswerPacket.Sign(packet, k));
        }
    }

    [Fact]
    public void ZerothOrderAnswersAgreeWithFirstOrderOnAQuadratic()
    {
        // f(x) = ½‖x − x*‖²: f(x + cu) − f(x − cu) = 2c⟨x − x*, u⟩, so both orders give the same bits up to rounding.
        const int d = 200;
        var optimum = Enumerable.Range(0, d).Select(i => (float)Math.Sin(i)).ToArray();
        var x = new float[d];
        double Loss(ReadOnlySpan<float> p)
        {
            double sum = 0;
            for (int i = 0; i < d; i++)
            {
                sum += 0.5 * (p[i] - optimum[i]) * (p[i] - optimum[i]);
            }

            return sum;
        }

        var gradient = optimum.Select(o => -o).ToArray();
        var answerer = new SignAnswerer(d);
        var first = new byte[SignAnswerPacket.Length(256)];
        var zeroth = new byte[first.Length];
        answerer.AnswerFirstOrder(11, "dev", gradient, 256, first);
        answerer.AnswerZerothOrder(11, "dev", x, 0.01f, Loss, 256, zeroth);
        int agree = Enumerable.Range(0, 256).Count(k => SignAnswerPacket.Sign(first, k) == SignAnswerPacket.Sign(zeroth, k));
        Assert.InRange(agree, 250, 256);
    }

    [Fact]
    public void TheRuleFollowsTheHandComputedSequence()
    {
        // The class's worked example: d = 1, α = 1/4, 1/5; β = 1/2, 1/√5; answers +1, +1.
        var rule = new TwoTimescaleSignRule(1, new SignSchedule(1, 1, 1, 0.5, 4), 8);
        float[] x = [0];
        float[] y = [0];
        // Direction 0 and 1 of key 0 must both be u = +1 for the answers +1 to read as +1: pick each bit to match.
        var words = new ulong[1];
        var packet = new byte[SignAnswerPacket.Length(2)];
        SignAnswerPacket.Start(packet, 2);
        for (int k = 0; k < 2; k++)
        {
            RademacherDirections.Generate(0, k, words);
            SignAnswerPacket.Set(packet, k, !RademacherDirections.IsNegative(words, 0));
        }

        Assert.Equal(2, rule.Apply(x, y, 0, 0, packet));
        Assert.Equal(0.5 + 0.5 / Math.Sqrt(5), y[0], 5);
        Assert.Equal(-0.125 - (0.5 + 0.5 / Math.Sqrt(5)) / 5, x[0], 5);
    }

    [Fact]
    public void TheClosedFormEqualsTheSequentialUpdates()
    {
        const int d = 100;
        var schedule = new SignSchedule(3, 0.8, 0.9, 0.6, 2);
        var rule = new TwoTimescaleSignRule(d, schedule, 64);
        var random = new Random(8);
        var x = Enumerable.Range(0, d).Select(_ => (float)random.NextDouble()).ToArray();
        var y = Enumerable.Range(0, d).Select(_ => (float)(0.05 * random.NextDouble())).ToArray();
        double[] xs = x.Select(v => (double)v).ToArray();
        double[] ys = y.Select(v => (double)v).ToArray();
        long k = 5;
        for (int message = 0; message < 3; message++)
        {
            int count = 40 + message;
            var packet = new byte[SignAnswerPacket.Length(count)];
            SignAnswerPacket.Start(packet, count);
            for (int i = 0; i < count; i++)
            {
                SignAnswerPacket.Set(packet, i, random.Next(2) == 1);
            }

            ulong key = RademacherDirections.DeviceKey(12, $"dev-{message}");
            var words = new ulong[RademacherDirections.WordCount(d)];
            var u = new float[d];
            for (int i = 0; i < count; i++)
            {
                RademacherDirections.Generate(key, i, words);
                RademacherDirections.CopyTo(words, u);
                double alpha = schedule.Alpha(k + i);
                double beta = schedule.Beta(k + i);
                int b = SignAnswerPacket.Sign(packet, i);
                for (int j = 0; j < d; j++)
                {
                    ys[j] += beta * (b * u[j] - ys[j]);
                    xs[j] -= alpha * ys[j];
                }
            }

            k = rule.Apply(x, y, k, key, packet);
        }

        Assert.Equal(5 + 40 + 41 + 42, k);
        for (int j = 0; j < d; j++)
        {
            Assert.Equal(xs[j], x[j], 4);
            Assert.Equal(ys[j], y[j], 5);
        }
    }

    [Fact]
    public void EachAnswerMovesTheEstimateByAtMostTwiceBeta()
    {
        const int d = 64;
        var schedule = new SignSchedule(1, 1, 0.9, 0.6, 1);
        var rule = new TwoTimescaleSignRule(d, schedule, 1);
        var x = new float[d];
        var y = new float[d];
        var random = new Random(2);
        for (long k = 0; k < 200; k++)
        {
            var before = y.ToArray();
            var packet = new byte[SignAnswerPacket.Length(1)];
            SignAnswerPacket.Start(packet, 1);
            SignAnswerPacket.Set(packet, 0, random.Next(2) == 1);
            rule.Apply(x, y, k, (ulong)random.NextInt64(), packet);
            double moved = Math.Sqrt(before.Zip(y, (a, b) => (a - b) * (a - b)).Sum());
            Assert.True(moved <= 2 * schedule.Beta(k) + 1e-6, $"answer {k} moved y by {moved}");
            Assert.True(Math.Sqrt(Dot(y, y)) <= 1 + 1e-6);
        }
    }

    [Fact]
    public void OptionsParseFromSpecParametersAndNameTheBadKey()
    {
        var options = FarSignOptions.FromParameters(new Dictionary<string, string>
        {
            ["order"] = "zeroth",
            ["directions"] = "256",
            ["alpha"] = "2.5",
            ["k0"] = "100",
            ["seed"] = "0xff",
            ["c"] = "0.001",
        });
        Assert.Equal(DerivativeOrder.Zeroth, options.Order);
        Assert.Equal(256, options.Directions);
        Assert.Equal(2.5, options.Alpha);
        Assert.Equal(255UL, options.Seed);
        Assert.Equal(0.001, options.Smoothing);
        // The published spec carries everything but the federation secret.
        Assert.DoesNotContain("seed", options.ToSpec());
        Assert.Equal(options with { Seed = 0 }, FarSignOptions.FromParameters(ParseSpecParameters(options.ToSpec())));
        Assert.Null(new FarSignOptions().Validate()); // the defaults form a valid schedule
        Assert.Equal(new FarSignOptions(), FarSignOptions.FromParameters(new Dictionary<string, string>()));

        Assert.Contains("'lr'", Assert.Throws<FormatException>(() => FarSignOptions.FromParameters(new Dictionary<string, string> { ["lr"] = "1" })).Message);
        Assert.Contains("alpha=x", Assert.Throws<FormatException>(() => FarSignOptions.FromParameters(new Dictionary<string, string> { ["alpha"] = "x" })).Message);
        Assert.Contains("order=second", Assert.Throws<FormatException>(() => FarSignOptions.FromParameters(new Dictionary<string, string> { ["order"] = "second" })).Message);
        Assert.Contains("directions", Assert.Throws<FormatException>(() => FarSignOptions.FromParameters(new Dictionary<string, string> { ["directions"] = "70000" })).Message);
        Assert.Contains("a must exceed b", Assert.Throws<FormatException>(() => FarSignOptions.FromParameters(new Dictionary<string, string> { ["a"] = "0.5" })).Message);
        Assert.Contains("seed=-1", Assert.Throws<FormatException>(() => FarSignOptions.FromParameters(new Dictionary<string, string> { ["seed"] = "-1" })).Message);
    }

    private static Dictionary<string, string> ParseSpecParameters(string spec) =>
        spec[(spec.IndexOf(':', StringComparison.Ordinal) + 1)..].Split(',').Select(p => p.Split('=')).ToDictionary(p => p[0], p => p[1]);

    private static byte[] Answers(FarSignStrategy strategy, long baseVersion, string device, ReadOnlySpan<float> gradient, int count)
    {
        var packet = new byte[SignAnswerPacket.Length(count)];
        new SignAnswerer(gradient.Length).AnswerFirstOrder(strategy.WorkSeed(baseVersion), device, gradient, count, packet);
        return packet;
    }

    [Fact]
    public void TheStrategyRefusesWhatItCannotUseWithReasons()
    {
        const int d = 16;
        var strategy = new FarSignStrategy(new FarSignOptions { Directions = 32, MaxStaleness = 3, Seed = 1 }, d);
        Assert.Equal(ContributionKind.DirectionalSigns, strategy.Contribution);
        var gradient = Enumerable.Range(0, d).Select(i => (float)(i - 8)).ToArray();
        var model = new float[d];
        var plan = strategy.Plan(new VersionContext(5, T0, 4), [])!;
        Assert.Equal((6, 1, null), (plan.Version, plan.Quorum, plan.Deadline));
        var version = strategy.Begin(plan);
        Assert.Contains("none came", version.Offer(DeviceContribution.SignAnswers("d0", default, 5))!.Reason);
        Assert.Contains("not a dense update", version.Offer(DeviceContribution.Update("d0", new float[d], 1, 5))!.Reason);
        Assert.Contains("above the 32 directions", version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 5, "d0", gradient, 33), 5))!.Reason);
        Assert.Contains("never published", version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 6, "d0", gradient, 8), 6))!.Reason);
        Assert.Equal(RefusalKind.TooStale, version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 1, "d0", gradient, 8), 1))!.Kind);
        var truncated = Answers(strategy, 5, "d0", gradient, 16)[..3];
        Assert.Contains("16 answers take 4", version.Offer(DeviceContribution.SignAnswers("d0", truncated, 5))!.Reason);
        Assert.False(version.IsReady);

        Assert.Null(version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 4, "d0", gradient, 32), 4)));
        Assert.True(version.IsReady);
        Assert.Contains("full", version.Offer(DeviceContribution.SignAnswers("d1", Answers(strategy, 5, "d1", gradient, 8), 5))!.Reason);
        Assert.Equal(new VersionResult(6, 1), version.Complete(model));
        Assert.Equal(32, strategy.AnswersApplied);
        Assert.Equal(4, strategy.LastAnswered("d0"));

        version = strategy.Begin(strategy.Plan(new VersionContext(6, T0, 4), [])!);
        Assert.Contains("already answered base v4", version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 4, "d0", gradient, 8), 4))!.Reason);
        Assert.Contains("is older", version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 3, "d0", gradient, 8), 3))!.Reason);
        Assert.Equal(RefusalKind.NotExpected, version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 3, "d0", gradient, 8), 3))!.Kind);
        Assert.Null(version.Offer(DeviceContribution.SignAnswers("d0", Answers(strategy, 6, "d0", gradient, 8), 6)));
    }

    [Fact]
    public void ARestoredStateGivesTheSameNextVersion()
    {
        const int d = 40;
        var options = new FarSignOptions { Directions = 64, Alpha = 5, Beta = 1, K0 = 10, Seed = 99 };
        var live = new FarSignStrategy(options, d);
        var model = new float[d];
        var gradient = Enumerable.Range(0, d).Select(i => (float)Math.Sin(i)).ToArray();
        for (long v = 0; v < 5; v++)
        {
            var version = live.Begin(live.Plan(new VersionContext(v, T0, 3), [])!);
            Assert.Null(version.Offer(DeviceContribution.SignAnswers($"d{v % 3}", Answers(live, v, $"d{v % 3}", gradient, 64), v)));
            version.Complete(model);
        }

        // What the host persisted, restored into a fresh strategy (a restart or another silo).
        var persisted = live.State.TakeChanged().ToDictionary(p => p.Name, p => p.Vector.ToArray());
        Assert.Contains(FarSignStrategy.EstimateKey, persisted.Keys);
        Assert.Contains(FarSignStrategy.CounterKey, persisted.Keys);
        var restoredState = new ServerState();
        foreach (var (name, vector) in persisted)
        {
            restoredState.Restore(name, vector);
        }

        var restored = new FarSignStrategy(options, d, restoredState);
        Assert.Equal(live.AnswersApplied, restored.AnswersApplied);
        Assert.Equal(3, restored.LastAnswered("d0"));
        var restoredModel = model.ToArray();
        var packet = Answers(live, 5, "d2", gradient, 50);
        var a = live.Begin(live.Plan(new VersionContext(5, T0, 3), [])!);
        var b = restored.Begin(restored.Plan(new VersionContext(5, T0, 3), [])!);
        Assert.Null(a.Offer(DeviceContribution.SignAnswers("d2", packet, 5)));
        Assert.Null(b.Offer(DeviceContribution.SignAnswers("d2", packet, 5)));
        a.Complete(model);
        b.Complete(restoredModel);
        Assert.Equal(model, restoredModel);
        Assert.Contains("already answered", restored.Begin(restored.Plan(new VersionContext(6, T0, 3), [])!)
            .Offer(DeviceContribution.SignAnswers("d0", Answers(live, 3, "d0", gradient, 8), 3))!.Reason);
    }

    [Fact]
    public void CounterSurvivesBeyondFloatPrecision()
    {
        var options = new FarSignOptions { Directions = 8, Beta = 1, K0 = 1 };
        var state = new ServerState();
        state.Restore(FarSignStrategy.CounterKey, [3, 16_777_215]); // 3·2^24 + 2^24 − 1
        var strategy = new FarSignStrategy(options, 4, state);
        Assert.Equal(4L * 16_777_216 - 1, strategy.AnswersApplied);
        var version = strategy.Begin(strategy.Plan(new VersionContext(0, T0, 1), [])!);
        Assert.Null(version.Offer(DeviceContribution.SignAnswers("d", Answers(strategy, 0, "d", new float[] { 1, 2, 3, 4 }, 8), 0)));
        version.Complete(new float[4]);
        Assert.Equal(4L * 16_777_216 + 7, strategy.AnswersApplied);
    }

    [Fact]
    public void AttacksInvertRandomiseAndOpposeTheHonestMajority()
    {
        const int d = 50;
        var gradient = Enumerable.Range(0, d).Select(i => (float)Math.Cos(i)).ToArray();
        var answerer = new SignAnswerer(d);
        var honest = new byte[SignAnswerPacket.Length(100)];
        answerer.AnswerFirstOrder(3, "bad", gradient, 100, honest);
        var flipped = honest.ToArray();
        SignAnswerAttacks.Flip(flipped);
        Assert.All(Enumerable.Range(0, 100), k => Assert.Equal(-SignAnswerPacket.Sign(honest, k), SignAnswerPacket.Sign(flipped, k)));
        Assert.Null(SignAnswerPacket.Validate(flipped, 100));

        var colluding = new byte[honest.Length];
        SignAnswerAttacks.Colluding(answerer, 3, "bad", gradient, 100, colluding);
        Assert.Equal(flipped, colluding);

        var random = honest.ToArray();
        SignAnswerAttacks.Randomize(random, 17);
        var again = honest.ToArray();
        SignAnswerAttacks.Randomize(again, 17);
        Assert.Equal(random, again);
        Assert.Null(SignAnswerPacket.Validate(random, 100));
        Assert.InRange(Enumerable.Range(0, 100).Count(k => SignAnswerPacket.Sign(random, k) > 0), 30, 70);
    }

    /// <summary>
    /// A small federation on f(x) = mean_i ½‖x − c_i‖², the c_i scattered around x* = mean c_i: devices answer
    /// asynchronously (each from the model of a version up to 3 behind, first order with minibatch noise). Honest
    /// answers drive x to x*; with 2 of 10 devices flipping every sign it still converges.
    /// </summary>
    [Theory]
    [InlineData(0, 0.1)]
    [InlineData(2, 0.2)]
    public void AQuadraticConvergesAndSurvivesSignFlips(int flippers, double tolerance)
    {
        const int d = 50;
        const int n = 10;
        const int count = 64;
        var random = new Random(21);
        var centres = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, d).Select(_ => (float)(1 + 0.5 * random.NextDouble())).ToArray()).ToArray();
        var optimum = Enumerable.Range(0, d).Select(j => centres.Average(c => c[j])).ToArray();
        var strategy = new FarSignStrategy(new FarSignOptions { Directions = count, Alpha = 40, Beta = 1, A = 0.9, B = 0.6, K0 = 1000, Seed = 5 }, d);
        var model = new float[d];
        var history = new List<float[]> { model.ToArray() };
        var answerer = new SignAnswerer(d);
        var gradient = new float[d];
        var packet = new byte[SignAnswerPacket.Length(count)];
        double start = Math.Sqrt(optimum.Sum(o => o * o));
        for (long v = 0; v < 600; v++)
        {
            int device = (int)(v % n);
            long baseVersion = Math.Max(0, v - random.Next(4));
            var seen = history[(int)baseVersion];
            for (int j = 0; j < d; j++)
            {
                gradient[j] = (float)(seen[j] - centres[device][j] + 0.3 * (random.NextDouble() - 0.5));
            }

            answerer.AnswerFirstOrder(strategy.WorkSeed(baseVersion), $"dev-{device}", gradient, count, packet);
            if (device < flippers)
            {
                SignAnswerAttacks.Flip(packet);
            }

            var version = strategy.Begin(strategy.Plan(new VersionContext(v, T0, n), [])!);
            Assert.Null(version.Offer(DeviceContribution.SignAnswers($"dev-{device}", packet, baseVersion)));
            version.Complete(model);
            history.Add(model.ToArray());
        }

        double error = Math.Sqrt(model.Zip(optimum, (x, o) => (x - o) * (x - o)).Sum());
        Assert.True(error < tolerance * start, $"‖x − x*‖ = {error:G4} of {start:G4} at the start");
    }
}
