namespace FedEdge.Drift.Tests;

/// <summary>
/// Drift classification on constructed shifts with a linear "model": C classes, features x = 3·e_y + noise in F
/// dimensions, logits = W·x with W the C class templates (W[c] = e_c). Real drift remaps labels; virtual drift moves
/// features along directions the model ignores; label drift changes the label mix.
/// </summary>
public class DriftClassifierTests
{
    private const int C = 4;
    private const int F = 12;

    private static (float[] X, long[] Y) Window(int n, long[] map, int seed, double[]? classWeights = null, float shift = 0, float scale = 3f)
    {
        var random = new Random(seed);
        var x = new float[n * F];
        var y = new long[n];
        for (var i = 0; i < n; i++)
        {
            var c = classWeights is null ? i % C : Draw(random, classWeights);
            for (var j = 0; j < F; j++)
            {
                x[i * F + j] = (float)(0.3 * ClusterCountTests.Gaussian(random)) + (j == c ? scale : 0f) + (j >= C ? shift : 0f);
            }

            y[i] = map[c];
        }

        return (x, y);
    }

    private static int Draw(Random random, double[] weights)
    {
        var u = random.NextDouble() * weights.Sum();
        for (var c = 0; c < weights.Length; c++)
        {
            u -= weights[c];
            if (u <= 0)
            {
                return c;
            }
        }

        return weights.Length - 1;
    }

    private static WindowStatistics Stats((float[] X, long[] Y) window)
    {
        var n = window.Y.Length;
        var logits = new float[n * C];
        for (var i = 0; i < n; i++)
        {
            for (var c = 0; c < C; c++)
            {
                logits[i * C + c] = window.X[i * F + c]; // W = [e_0 … e_{C−1}]
            }
        }

        return WindowStatistics.Compute(window.X, window.Y, logits, C, C);
    }

    private static readonly long[] Identity = [0, 1, 2, 3];
    private static readonly long[] Reversed = [3, 2, 1, 0];

    /// <summary>Centres from k-means over 8 devices: 4 with the identity labelling, 4 with reversed labels.</summary>
    private static KMeansResult Centres()
    {
        var prototypes = new List<float>();
        for (var device = 0; device < 8; device++)
        {
            prototypes.AddRange(Stats(Window(200, device < 4 ? Identity : Reversed, 100 + device)).Prototype.Values);
        }

        return KMeans.Fit([.. prototypes], 8, C * C, 2, seed: 1);
    }

    [Fact]
    public void RealDriftChangesTheNearestCentre()
    {
        var centres = Centres();
        var before = Stats(Window(300, Identity, 1));
        var after = Stats(Window(300, Reversed, 2));
        var verdict = new DriftClassifier().Classify(before, after, centres.Centres, centres.K);
        Assert.Equal(DriftClass.Real, verdict.Class);
        Assert.NotEqual(verdict.PreviousCentre, verdict.CurrentCentre);
        Assert.True(verdict.LossIncrease > 1, $"loss increase {verdict.LossIncrease}");
        Assert.Equal(TrainingWindow.CurrentOnly, DriftAdaptation.Decide(verdict.Class));
    }

    [Fact]
    public void VirtualDriftKeepsTheCentreAndMovesTheFeatures()
    {
        var centres = Centres();
        var before = Stats(Window(300, Identity, 1));
        var after = Stats(Window(300, Identity, 2, shift: 2f));
        var verdict = new DriftClassifier().Classify(before, after, centres.Centres, centres.K);
        Assert.Equal(DriftClass.Virtual, verdict.Class);
        Assert.Equal(verdict.PreviousCentre, verdict.CurrentCentre);
        Assert.True(verdict.LabelShift < 0.1f);
        Assert.Equal(TrainingWindow.PreviousAndCurrent, DriftAdaptation.Decide(verdict.Class));
    }

    [Fact]
    public void VirtualDriftAcrossClustersIsNotRealWhenTheInputsMoved()
    {
        // k-means also separates weak-signal devices (class template scaled to 1) from the others: P(x) alone then moves
        // a device to another centre. The paper's centre rule calls that real drift; the input-shift guard does not.
        var prototypes = new List<float>();
        for (var device = 0; device < 12; device++)
        {
            var window = device < 4 ? Window(200, Identity, 100 + device) : device < 8 ? Window(200, Identity, 100 + device, scale: 1f) : Window(200, Reversed, 100 + device);
            prototypes.AddRange(Stats(window).Prototype.Values);
        }

        var centres = KMeans.Fit([.. prototypes], 12, C * C, 3, seed: 1);
        var before = Stats(Window(300, Identity, 1));
        var after = Stats(Window(300, Identity, 2, shift: 2f, scale: 1f));
        var guarded = new DriftClassifier().Classify(before, after, centres.Centres, centres.K);
        Assert.NotEqual(guarded.PreviousCentre, guarded.CurrentCentre);
        Assert.Equal(1.0, guarded.RowAlignment);
        Assert.Equal(DriftClass.Virtual, guarded.Class);

        var paperRule = new DriftClassifier(new DriftThresholds { InputShiftExplainsCentreChange = false }).Classify(before, after, centres.Centres, centres.K);
        Assert.Equal(DriftClass.Real, paperRule.Class);

        var real = new DriftClassifier().Classify(before, Stats(Window(300, Reversed, 3)), centres.Centres, centres.K);
        Assert.Equal(DriftClass.Real, real.Class);
        Assert.Equal(0.0, real.RowAlignment);
    }

    [Fact]
    public void LabelDriftKeepsTheCentreAndMovesTheHistogram()
    {
        var centres = Centres();
        var before = Stats(Window(300, Identity, 1));
        var after = Stats(Window(300, Identity, 2, classWeights: [0.7, 0.25, 0.05, 0]));
        var verdict = new DriftClassifier().Classify(before, after, centres.Centres, centres.K);
        Assert.Equal(DriftClass.Label, verdict.Class);
        Assert.True(verdict.LabelShift > 0.4f, $"label shift {verdict.LabelShift}");
        Assert.Equal(TrainingWindow.PreviousAndCurrent, DriftAdaptation.Decide(verdict.Class));
    }

    [Fact]
    public void SameDistributionIsNoDrift()
    {
        var centres = Centres();
        var verdict = new DriftClassifier().Classify(Stats(Window(300, Reversed, 1)), Stats(Window(300, Reversed, 2)), centres.Centres, centres.K);
        Assert.Equal(DriftClass.None, verdict.Class);
        Assert.False(verdict.Detected);
    }

    [Fact]
    public void PrototypeWorkedExample()
    {
        var p = Prototype.FromLogits([1, 0, 3, 0, 0, 5], [0, 0, 1], 3, 2);
        Assert.Equal([2f, 0, 0, 5, 0, 0], p.Values);
        Assert.Equal([2, 1, 0], p.Counts);
        Assert.Throws<ArgumentException>(() => Prototype.FromLogits([1, 0], [3], 3, 2));
    }

    [Fact]
    public void WindowStatisticsMatchDirectFormulas()
    {
        float[] x = [1, 2, 3, 6];   // two samples, two features
        long[] y = [0, 1];
        float[] logits = [0, 0, 0, 0]; // uniform → loss ln 2
        var s = WindowStatistics.Compute(x, y, logits, 2, 2);
        Assert.Equal([2f, 4f], s.FeatureMean);
        Assert.Equal([1f, 4f], s.FeatureVariance);
        Assert.Equal([0.5f, 0.5f], s.LabelHistogram);
        Assert.Equal(Math.Log(2), s.MeanLoss, 5);
    }
}
