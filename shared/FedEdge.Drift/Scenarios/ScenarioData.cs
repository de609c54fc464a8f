using FedEdge.Data;

namespace FedEdge.Drift.Scenarios;

/// <summary>One device's data at one time step: training and test windows under the same concept.</summary>
public sealed record DeviceWindow(int Device, int TimeStep, DeviceConcept Concept, Dataset Train, Dataset Test);

/// <summary>
/// Builds the devices' windows of a <see cref="DriftScenario"/>: each device owns an IID share of the training and test
/// sets; at time step t it draws <see cref="DriftScenario.TrainSamples"/> / <see cref="DriftScenario.TestSamples"/>
/// samples from its share (weighted by the label mix under label drift), relabels them with its label map and rotates
/// them. Deterministic in (seed, device, t).
/// </summary>
public sealed class ScenarioData
{
    private readonly DriftScenario _scenario;
    private readonly Dataset _train;
    private readonly Dataset _test;
    private readonly int[][] _trainShares;
    private readonly int[][] _testShares;

    public ScenarioData(DriftScenario scenario, Dataset train, Dataset test)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        if (train.ClassCount != DriftScenario.ClassCount)
        {
            throw new ArgumentException($"The drift scenarios need a {DriftScenario.ClassCount}-class data set; got {train.ClassCount} classes.", nameof(train));
        }

        _scenario = scenario;
        _train = train.WithStorage(FeatureStorage.Float32);
        _test = test.WithStorage(FeatureStorage.Float32);
        _trainShares = Partition.Iid(_train.Labels, scenario.Devices, scenario.Seed);
        _testShares = Partition.Iid(_test.Labels, scenario.Devices, scenario.Seed + 1);
    }

    public int[] SampleShape => _train.SampleShape;

    /// <summary>Loads Fashion-MNIST from <paramref name="directory"/> (default: the Debian dataset-fashion-mnist path).</summary>
    public static ScenarioData LoadFashionMnist(DriftScenario scenario, string? directory = null) =>
        new(scenario, FashionMnist.LoadTrain(directory), FashionMnist.LoadTest(directory));

    public DeviceWindow Window(int device, int t)
    {
        var concept = _scenario.ConceptAt(device, t);
        var random = new Random(HashCode.Combine(_scenario.Seed, device, t));
        var train = Materialize(_train, Draw(_train, _trainShares[device], _scenario.TrainSamples, concept.LabelMix, random), concept);
        var test = Materialize(_test, Draw(_test, _testShares[device], _scenario.TestSamples, concept.LabelMix, random), concept);
        return new DeviceWindow(device, t, concept, train, test);
    }

    /// <summary>Two windows' training data as one data set (FedDAA's "old + current" training set).</summary>
    public static Dataset Concat(Dataset a, Dataset b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return new Dataset([.. a.Features, .. b.Features], [.. a.Labels, .. b.Labels], a.SampleShape, a.ClassCount);
    }

    private static int[] Draw(Dataset data, int[] share, int count, int mix, Random random)
    {
        if (mix < 0)
        {
            var copy = (int[])share.Clone();
            random.Shuffle(copy);
            return count <= copy.Length ? copy[..count] : [.. Enumerable.Range(0, count).Select(i => copy[i % copy.Length])];
        }

        // Label drift: sample with replacement, each sample's probability ∝ weight of its class / class frequency.
        var weights = DriftScenario.LabelMixOf(mix);
        var byClass = new List<int>[DriftScenario.ClassCount];
        for (var c = 0; c < byClass.Length; c++)
        {
            byClass[c] = [];
        }

        foreach (var i in share)
        {
            byClass[data.Labels[i]].Add(i);
        }

        var result = new int[count];
        for (var k = 0; k < count; k++)
        {
            var u = random.NextDouble();
            var c = 0;
            for (; c < weights.Length - 1; c++)
            {
                u -= weights[c];
                if (u <= 0)
                {
                    break;
                }
            }

            while (byClass[c].Count == 0)
            {
                c = (c + 1) % byClass.Length;
            }

            result[k] = byClass[c][random.Next(byClass[c].Count)];
        }

        return result;
    }

    private static Dataset Materialize(Dataset source, int[] indices, DeviceConcept concept)
    {
        var data = DataTransforms.RemapLabels(source.Subset(indices), DriftScenario.LabelMapOf(concept.LabelMap));
        return concept.RotationDegrees == 0 ? data : DataTransforms.Rotate(data, concept.RotationDegrees);
    }
}
