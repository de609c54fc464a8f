using FedEdge.Aggregation.Rules;
using FedEdge.Data;

namespace FedEdge.Drift.Scenarios;

/// <summary>A federated method in the scenario runner: sees the windows at each step, runs rounds, answers accuracy.</summary>
internal abstract class ScenarioMethod(ModelEngine engine, int seed)
{
    protected ModelEngine Engine { get; } = engine;

    protected Random Random { get; } = new(seed);

    protected DeviceWindow[] Current { get; private set; } = [];

    protected DeviceWindow[]? Previous { get; private set; }

    public abstract string Name { get; }

    /// <summary>Number of models the method holds now.</summary>
    public abstract int ModelCount { get; }

    public virtual void BeginStep(int t, DeviceWindow[] current, DeviceWindow[]? previous)
    {
        Current = current;
        Previous = previous;
    }

    /// <summary>One round with the sampled devices; returns their mean training loss.</summary>
    public abstract double Round(int t, int round, int[] sampled);

    /// <summary>Accuracy of the model(s) the device would use on its test window.</summary>
    public abstract double Accuracy(DeviceWindow window);

    protected static int[] All(Dataset data) => [.. Enumerable.Range(0, data.Count)];

    /// <summary>Weighted FedAvg of full parameter vectors (aggregation library's streaming mean).</summary>
    protected static float[] Average(IReadOnlyList<(float[] Parameters, float Weight)> updates, int dimension)
    {
        var mean = new WeightedMeanAccumulator(dimension);
        foreach (var (parameters, weight) in updates)
        {
            mean.Add(parameters, weight);
        }

        var result = new float[dimension];
        mean.Complete(result);
        return result;
    }
}

/// <summary>FedAvg (McMahan et al. 2017): one model, devices train on their current window, mean weighted by sample count.</summary>
internal sealed class FedAvgMethod(ModelEngine engine, int seed, int epochs) : ScenarioMethod(engine, seed)
{
    private float[] _model = engine.Initial(seed);

    public override string Name => "FedAvg";

    public override int ModelCount => 1;

    public override double Round(int t, int round, int[] sampled)
    {
        var updates = new List<(float[], float)>();
        double loss = 0;
        foreach (var d in sampled)
        {
            var data = Current[d].Train;
            var local = (float[])_model.Clone();
            loss += Engine.Train(local, data, All(data), epochs, Random);
            updates.Add((local, data.Count));
        }

        _model = Average(updates, Engine.ParameterCount);
        return loss / sampled.Length;
    }

    public override double Accuracy(DeviceWindow window) =>
        ModelEngine.Accuracy(Engine.Logits(_model, window.Test), window.Test.Labels, Engine.ClassCount);
}

/// <summary>
/// IFCA (Ghosh et al., "An Efficient Framework for Clustered Federated Learning", NeurIPS 2020), loss-based hard
/// clustering with a fixed k: a device picks the cluster model with the lowest loss on its current data, trains it, and
/// the server averages each cluster model over the devices that picked it. Models start from k different seeds.
/// </summary>
internal sealed class IfcaMethod : ScenarioMethod
{
    private readonly float[][] _models;
    private readonly int _epochs;

    public IfcaMethod(ModelEngine engine, int seed, int epochs, int clusters)
        : base(engine, seed)
    {
        _epochs = epochs;
        _models = [.. Enumerable.Range(0, clusters).Select(c => engine.Initial(seed + 1000 * c))];
    }

    public override string Name => "IFCA";

    public override int ModelCount => _models.Length;

    private int Choose(Dataset data)
    {
        var best = 0;
        var bestLoss = double.PositiveInfinity;
        for (var c = 0; c < _models.Length; c++)
        {
            var loss = Engine.Losses(_models[c], data).Average();
            if (loss < bestLoss)
            {
                bestLoss = loss;
                best = c;
            }
        }

        return best;
    }

    public override double Round(int t, int round, int[] sampled)
    {
        var updates = _models.Select(_ => new List<(float[], float)>()).ToArray();
        double loss = 0;
        foreach (var d in sampled)
        {
            var data = Current[d].Train;
            var c = Choose(data);
            var local = (float[])_models[c].Clone();
            loss += Engine.Train(local, data, All(data), _epochs, Random);
            updates[c].Add((local, data.Count));
        }

        for (var c = 0; c < _models.Length; c++)
        {
            if (updates[c].Count > 0)
            {
                _models[c] = Average(updates[c], Engine.ParameterCount);
            }
        }

        return loss / sampled.Length;
    }

    public override double Accuracy(DeviceWindow window) =>
        ModelEngine.Accuracy(Engine.Logits(_models[Choose(window.Train)], window.Test), window.Test.Labels, Engine.ClassCount);
}

/// <summary>
/// FedDAA (Peng et al., arXiv 2506.21054): cluster models trained with FedRC soft assignment; at every time step the
/// server chooses the number of clusters by k-means + silhouette over the devices' prototypes
/// (<see cref="ClusterCountSelector"/>), each device classifies its drift against the centres
/// (<see cref="DriftClassifier"/>) and keeps (virtual/label drift) or drops (real drift) its previous window
/// (<see cref="DriftAdaptation"/>). When the clustering changes, each new cluster starts from the existing model that
/// fits its devices best (<see cref="ClusterModelMatcher"/>) and devices' priors start on their k-means cluster.
/// </summary>
internal sealed class FedDaaMethod : ScenarioMethod
{
    private const float SeedPriorShare = 0.9f;
    private readonly int _epochs;
    private readonly int _warmupRounds;
    private readonly ClusterCountSelector _selector;
    private readonly DriftClassifier _classifier;
    private readonly int _devices;
    private List<float[]> _models;
    private float[] _labelDistributions; // M × C
    private float[][] _priors;           // per device, M
    private TrainingWindow[] _windows;

    public FedDaaMethod(ModelEngine engine, int seed, int epochs, int devices, int warmupRounds, ClusterCountOptions? clusterOptions = null, DriftThresholds? thresholds = null)
        : base(engine, seed)
    {
        _epochs = epochs;
        _warmupRounds = warmupRounds;
        _devices = devices;
        _selector = new ClusterCountSelector(clusterOptions ?? new ClusterCountOptions { Seed = seed });
        _classifier = new DriftClassifier(thresholds);
        _models = [engine.Initial(seed)];
        _labelDistributions = Uniform(1);
        _priors = [.. Enumerable.Range(0, devices).Select(_ => new[] { 1f })];
        _windows = new TrainingWindow[devices];
    }

    public override string Name => "FedDAA";

    public override int ModelCount => _models.Count;

    /// <summary>Verdict per device for the change into the current step (null at step 0).</summary>
    public DriftAssessment[]? Assessments { get; private set; }

    /// <summary>The last cluster-count decision.</summary>
    public ClusterCountDecision? LastDecision { get; private set; }

    public override void BeginStep(int t, DeviceWindow[] current, DeviceWindow[]? previous)
    {
        base.BeginStep(t, current, previous);
        Assessments = null;
        Array.Fill(_windows, TrainingWindow.CurrentOnly);
        if (t > 0)
        {
            Recluster(detect: true);
        }
    }

    /// <summary>Prototypes with the reference (first) model → k-means/silhouette → drift verdicts → matched cluster models.</summary>
    private void Recluster(bool detect)
    {
        var reference = _models[0];
        var classes = Engine.ClassCount;
        var current = new WindowStatistics[_devices];
        var prototypeLength = DriftScenario.ClassCount * classes;
        var points = new float[_devices * prototypeLength];
        for (var d = 0; d < _devices; d++)
        {
            current[d] = Statistics(reference, Current[d].Train);
            current[d].Prototype.Values.CopyTo(points, d * prototypeLength);
        }

        var decision = _selector.Select(points, _devices, prototypeLength);
        LastDecision = decision;
        var k = decision.K;
        if (detect && Previous is not null)
        {
            Assessments = new DriftAssessment[_devices];
            for (var d = 0; d < _devices; d++)
            {
                var previous = Statistics(reference, Previous[d].Train);
                Assessments[d] = _classifier.Classify(previous, current[d], decision.Clustering.Centres, k);
                _windows[d] = DriftAdaptation.Decide(Assessments[d].Class);
            }
        }

        // Match new clusters to existing models by loss on the devices' current data.
        var losses = new float[_devices * _models.Count];
        for (var d = 0; d < _devices; d++)
        {
            for (var m = 0; m < _models.Count; m++)
            {
                losses[d * _models.Count + m] = Engine.Losses(_models[m], Current[d].Train).Average();
            }
        }

        var parents = ClusterModelMatcher.Match(decision.Clustering.Assignments, losses, k, _models.Count);
        var distributions = new float[k * DriftScenario.ClassCount];
        for (var j = 0; j < k; j++)
        {
            Array.Copy(_labelDistributions, parents[j] * DriftScenario.ClassCount, distributions, j * DriftScenario.ClassCount, DriftScenario.ClassCount);
        }

        _models = [.. parents.Select(p => (float[])_models[p].Clone())];
        _labelDistributions = distributions;
        for (var d = 0; d < _devices; d++)
        {
            var prior = new float[k];
            Array.Fill(prior, (1 - SeedPriorShare) / Math.Max(1, k - 1));
            prior[decision.Clustering.Assignments[d]] = k == 1 ? 1 : SeedPriorShare;
            _priors[d] = prior;
        }
    }

    private WindowStatistics Statistics(float[] model, Dataset data) =>
        WindowStatistics.Compute(data.Features, data.Labels, Engine.Logits(model, data), DriftScenario.ClassCount, Engine.ClassCount);

    private Dataset TrainingData(int device) =>
        _windows[device] == TrainingWindow.PreviousAndCurrent && Previous is not null
            ? ScenarioData.Concat(Previous[device].Train, Current[device].Train)
            : Current[device].Train;

    private SoftAssignment Assign(int device, Dataset data)
    {
        var m = _models.Count;
        var losses = new float[data.Count * m];
        for (var c = 0; c < m; c++)
        {
            var perSample = Engine.Losses(_models[c], data);
            for (var i = 0; i < perSample.Length; i++)
            {
                losses[i * m + c] = perSample[i];
            }
        }

        return SoftClusterAssignment.Assign(losses, data.Labels, _priors[device], _labelDistributions, DriftScenario.ClassCount);
    }

    public override double Round(int t, int round, int[] sampled)
    {
        if (t == 0 && round == _warmupRounds)
        {
            Recluster(detect: false);
        }

        var m = _models.Count;
        var updates = _models.Select(_ => new List<(float[], float)>()).ToArray();
        var histogram = new float[m * DriftScenario.ClassCount];
        double loss = 0;
        var losses = 0;
        foreach (var d in sampled)
        {
            var data = TrainingData(d);
            var assignment = Assign(d, data);
            _priors[d] = assignment.Prior;
            for (var i = 0; i < histogram.Length; i++)
            {
                histogram[i] += assignment.LabelHistogram[i];
            }

            var drawn = SoftClusterAssignment.SampleClusters(assignment, Random);
            for (var c = 0; c < m; c++)
            {
                var indices = Enumerable.Range(0, drawn.Length).Where(i => drawn[i] == c).ToArray();
                var local = (float[])_models[c].Clone();
                var l = Engine.Train(local, data, indices, _epochs, Random);
                if (double.IsFinite(l))
                {
                    updates[c].Add((local, assignment.Mass(c)));
                    loss += l * indices.Length;
                    losses += indices.Length;
                }
            }
        }

        for (var c = 0; c < m; c++)
        {
            if (updates[c].Count > 0)
            {
                _models[c] = Average(updates[c], Engine.ParameterCount);
            }
        }

        var fresh = SoftClusterAssignment.LabelDistributions(histogram, m, DriftScenario.ClassCount);
        for (var c = 0; c < m; c++)
        {
            if (updates[c].Count > 0)
            {
                Array.Copy(fresh, c * DriftScenario.ClassCount, _labelDistributions, c * DriftScenario.ClassCount, DriftScenario.ClassCount);
            }
        }

        return losses == 0 ? double.NaN : loss / losses;
    }

    /// <summary>The device's π from a soft assignment on its current training window, then Σ_c π_c·softmax(logits_c) on its test window.</summary>
    public override double Accuracy(DeviceWindow window)
    {
        var prior = Assign(window.Device, window.Train).Prior;
        var classes = Engine.ClassCount;
        var scores = new float[window.Test.Count * classes];
        for (var c = 0; c < _models.Count; c++)
        {
            var logits = Engine.Logits(_models[c], window.Test);
            for (var i = 0; i < window.Test.Count; i++)
            {
                var row = logits.AsSpan(i * classes, classes);
                System.Numerics.Tensors.TensorPrimitives.SoftMax(row, row);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(row, prior[c], scores.AsSpan(i * classes, classes), scores.AsSpan(i * classes, classes));
            }
        }

        return ModelEngine.Accuracy(scores, window.Test.Labels, classes);
    }

    private static float[] Uniform(int clusters)
    {
        var p = new float[clusters * DriftScenario.ClassCount];
        Array.Fill(p, 1f / DriftScenario.ClassCount);
        return p;
    }
}
