using CsCheck;
using FedEdge.Aggregation.PreAggregation;
using FedEdge.Aggregation.Rules;

namespace FedEdge.Aggregation.Tests;

/// <summary>Properties over random batches (CsCheck): kernels against scalar references, invariances, robustness.</summary>
public class RulePropertyTests
{
    [Fact]
    public void MedianAndTrimmedMeanMatchASortPerColumn()
    {
        // n up to 60 and d with tails that are not multiples of the SIMD width or the column block.
        Gen.Select(TestData.Batch(1, 60, 70), Gen.Int[0, 29]).Sample(t =>
        {
            var ((n, d, data), fRaw) = t;
            int f = fRaw % ((n + 1) / 2);
            var median = TestData.Aggregate(new CoordinateWiseMedianRule(), data, n, d);
            var trimmed = TestData.Aggregate(new TrimmedMeanRule(f), data, n, d);
            for (int j = 0; j < d; j++)
            {
                var column = TestData.Column(data, n, d, j);
                Array.Sort(column);
                float expectedMedian = n % 2 == 1 ? column[n / 2] : (column[(n / 2) - 1] + column[n / 2]) / 2;
                double expectedTrimmed = column[f..(n - f)].Average(v => (double)v);
                Assert.Equal(expectedMedian, median[j], 6);
                Assert.Equal(expectedTrimmed, trimmed[j], 1e-5);
            }
        }, iter: 300);
    }

    [Fact]
    public void OrderStatisticsHandleTiesAndEveryRunLayout()
    {
        // Many equal values, and n on both sides of the 16-row runs sorted in registers (16, 32, 48, 64 ± 1).
        var gen = from n in Gen.OneOf(Gen.Int[14, 18], Gen.Int[31, 33], Gen.Int[47, 51], Gen.Int[63, 65])
                  from d in Gen.Int[1, 200]
                  from data in Gen.Int[-2, 2].Select(v => (float)v).Array[n * d]
                  select (n, d, data);
        gen.Sample(t =>
        {
            var (n, d, data) = t;
            int f = n / 4;
            var median = TestData.Aggregate(new CoordinateWiseMedianRule(), data, n, d);
            var trimmed = TestData.Aggregate(new TrimmedMeanRule(f), data, n, d);
            for (int j = 0; j < d; j++)
            {
                var column = TestData.Column(data, n, d, j);
                Array.Sort(column);
                Assert.Equal(n % 2 == 1 ? column[n / 2] : (column[(n / 2) - 1] + column[n / 2]) / 2, median[j]);
                Assert.Equal(column[f..(n - f)].Average(v => (double)v), trimmed[j], 1e-5);
            }
        }, iter: 100);
    }

    [Fact]
    public void MedianHandlesDimensionsAcrossParallelBlocks()
    {
        // Large enough to run on several threads and several column blocks, with a ragged tail.
        const int n = 7, d = 20_003;
        var random = new Random(3);
        var data = new float[n * d];
        for (int k = 0; k < data.Length; k++)
        {
            data[k] = (float)random.NextDouble();
        }

        var median = TestData.Aggregate(new CoordinateWiseMedianRule(), data, n, d);
        for (int j = 0; j < d; j += 97)
        {
            var column = TestData.Column(data, n, d, j);
            Array.Sort(column);
            Assert.Equal(column[3], median[j]);
        }

        Assert.Equal(TestData.Column(data, n, d, d - 1).Order().ElementAt(3), median[d - 1]);
    }

    [Fact]
    public void KrumScoresMatchNaivePairwiseDistances()
    {
        TestData.Batch(5, 20, 300).Sample(t =>
        {
            var (n, d, data) = t;
            int f = (n - 3) / 2;
            var scores = KrumScores.Compute(new UpdateBatch(data, n, d), f);
            for (int i = 0; i < n; i++)
            {
                var distances = Enumerable.Range(0, n).Where(j => j != i)
                    .Select(j => Enumerable.Range(0, d).Sum(k => Math.Pow(data[(i * d) + k] - data[(j * d) + k], 2)))
                    .Order().Take(n - f - 2).Sum();
                Assert.Equal(distances, scores[i], 1e-3 * Math.Max(1, distances));
            }
        }, iter: 100);
    }

    public static TheoryData<string> PermutationInvariantRules =>
        ["mean", "median", "trimmed-mean", "krum", "multi-krum", "geomed", "centered-clip", "sign-vote"];

    [Theory]
    [MemberData(nameof(PermutationInvariantRules))]
    public void RulesArePermutationInvariant(string name)
    {
        Gen.Select(TestData.Batch(7, 25, 40), Gen.Int).Sample(t =>
        {
            var ((n, d, data), seed) = t;
            var order = Enumerable.Range(0, n).ToArray();
            new Random(seed).Shuffle(order);
            var parameters = new RuleParameters { F = 2 };
            var original = TestData.Aggregate(AggregationRuleFactory.Create(name, parameters, n), data, n, d);
            var permuted = TestData.Aggregate(AggregationRuleFactory.Create(name, parameters, n), TestData.Permute(data, d, order), n, d);
            // Exact for order statistics and votes; sums may round differently in another order.
            TestData.AssertClose(original, permuted, 1e-4);
        }, iter: 60);
    }

    public static TheoryData<string> CoordinateRobustRules =>
        ["median", "trimmed-mean", "krum", "multi-krum", "bucketing+median", "nnm+trimmed-mean", "nnm+median"];

    [Theory]
    [MemberData(nameof(CoordinateRobustRules))]
    public void RobustRulesStayInsideTheHonestRangeUnderHugeOutliers(string name)
    {
        var gen = from f in Gen.Int[1, 4]
                  from honestExtra in Gen.Int[0, 8]
                  from d in Gen.Int[1, 30]
                  from signs in Gen.Bool.Array[f]
                  from honest in Gen.Float[-1f, 1f].Array[((3 * f) + 3 + honestExtra) * d]
                  select (f, d, signs, honest);
        gen.Sample(t =>
        {
            var (f, d, signs, honest) = t;
            int h = honest.Length / d, n = h + f;
            var data = new float[n * d];
            honest.CopyTo(data, 0);
            for (int b = 0; b < f; b++)
            {
                data.AsSpan((h + b) * d, d).Fill(signs[b] ? 1e9f : -1e9f);
            }

            IAggregationRule rule = name switch
            {
                "bucketing+median" => new PreAggregatedRule(new BucketingPreAggregator(2, seed: f), new CoordinateWiseMedianRule()),
                _ => AggregationRuleFactory.Create(name, new RuleParameters { F = f }, n),
            };
            var result = TestData.Aggregate(rule, data, n, d);
            for (int j = 0; j < d; j++)
            {
                var column = TestData.Column(honest, h, d, j);
                Assert.InRange(result[j], column.Min() - 1e-5f, column.Max() + 1e-5f);
            }
        }, iter: 100);
    }

    [Theory]
    [InlineData("geomed")]
    [InlineData("centered-clip")]
    public void NormRobustRulesStayNearTheHonestMeanUnderHugeOutliers(string name)
    {
        // GM and CC bound the error in norm, not per coordinate: ‖A − mean_h‖ stays within the honest diameter
        // (plus L·τ for clipping), instead of ~1e9.
        (from d in Gen.Int[1, 30] from honest in Gen.Float[-1f, 1f].Array[12 * d] from f in Gen.Int[1, 5] select (d, honest, f)).Sample(t =>
        {
            var (d, honest, f) = t;
            int h = 12, n = h + f;
            var data = new float[n * d];
            honest.CopyTo(data, 0);
            data.AsSpan(h * d).Fill(1e9f);
            var result = TestData.Aggregate(AggregationRuleFactory.Create(name, new RuleParameters { F = f }, n), data, n, d);
            var mean = TestData.Aggregate(new WeightedMeanRule(), honest, h, d);
            double error = Math.Sqrt(Enumerable.Range(0, d).Sum(j => Math.Pow(result[j] - mean[j], 2)));
            double diameter = 2 * Math.Sqrt(d);
            Assert.True(error <= diameter + (name == "centered-clip" ? 3 * 10 : 0), $"error {error}");
        }, iter: 100);
    }

    [Fact]
    public void StreamingMeanEqualsBatchMean()
    {
        (from batch in TestData.Batch(1, 30, 200) from weights in Gen.Float[0.5f, 100f].Array[30] select (batch, weights)).Sample(t =>
        {
            var ((n, d, data), weights) = t;
            var w = weights[..n];
            var accumulator = new WeightedMeanAccumulator(d);
            for (int i = 0; i < n; i++)
            {
                accumulator.Add(data.AsSpan(i * d, d), w[i]);
            }

            var streamed = new float[d];
            accumulator.Complete(streamed);
            TestData.AssertClose(TestData.Aggregate(new WeightedMeanRule(), data, n, d, w), streamed, 1e-5);
        }, iter: 200);
    }

    [Fact]
    public void PackedSignVoteEqualsTheSignOfTheSumOfUnpackedSigns()
    {
        var gen = from n in Gen.Int[1, 70]
                  from d in Gen.OneOf(Gen.Int[1, 700], Gen.Const(64), Gen.Const(256), Gen.Const(257), Gen.Int[1000, 3000])
                  from bytes in Gen.Byte.Array[n * ((d + 7) / 8)]
                  select (n, d, bytes);
        gen.Sample(t =>
        {
            var (n, d, bytes) = t;
            int packed = (d + 7) / 8;
            var vote = new SignMajorityVoteAccumulator(d);
            for (int i = 0; i < n; i++)
            {
                vote.AddPacked(bytes.AsSpan(i * packed, packed));
            }

            var result = new float[d];
            vote.Complete(result);
            for (int j = 0; j < d; j++)
            {
                int sum = 0;
                for (int i = 0; i < n; i++)
                {
                    sum += ((bytes[(i * packed) + (j / 8)] >> (j % 8)) & 1) == 1 ? -1 : 1;
                }

                Assert.Equal(Math.Sign(sum), (int)result[j]);
            }
        }, iter: 300);
    }

    [Fact]
    public void FloatSignVotePacksLikeTheSharedLayout()
    {
        TestData.Batch(1, 20, 300).Sample(t =>
        {
            var (n, d, data) = t;
            var packed = new byte[(d + 7) / 8];
            var fromPacked = new SignMajorityVoteAccumulator(d);
            for (int i = 0; i < n; i++)
            {
                SignMajorityVoteAccumulator.PackSigns(data.AsSpan(i * d, d), packed);
                for (int j = 0; j < d; j++)
                {
                    Assert.Equal(data[(i * d) + j] < 0, ((packed[j / 8] >> (j % 8)) & 1) == 1);
                }

                fromPacked.AddPacked(packed);
            }

            var expected = new float[d];
            fromPacked.Complete(expected);
            Assert.Equal(expected, TestData.Aggregate(new SignMajorityVoteRule(), data, n, d));
        }, iter: 100);
    }
}
