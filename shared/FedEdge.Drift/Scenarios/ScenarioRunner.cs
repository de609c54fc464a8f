using System.Diagnostics;

namespace FedEdge.Drift.Scenarios;

/// <summary>Precision and recall of one drift class over (device, step) pairs.</summary>
public sealed record DetectionScore(DriftClass Class, int TruePositives, int FalsePositives, int FalseNegatives)
{
    /// <summary>TP / (TP + FP); NaN when nothing was predicted as this class.</summary>
    public double Precision => TruePositives + FalsePositives == 0 ? double.NaN : (double)TruePositives / (TruePositives + FalsePositives);

    /// <summary>TP / (TP + FN); NaN when the class never occurred.</summary>
    public double Recall => TruePositives + FalseNegatives == 0 ? double.NaN : (double)TruePositives / (TruePositives + FalseNegatives);

    public static IReadOnlyList<DetectionScore> Score(IEnumerable<(DriftClass Truth, DriftClass Predicted)> pairs)
    {
        var list = pairs.ToList();
        return [.. new[] { DriftClass.Real, DriftClass.Virtual, DriftClass.Label }.Select(c => new DetectionScore(c,
            list.Count(p => p.Truth == c && p.Predicted == c),
            list.Count(p => p.Truth != c && p.Predicted == c),
            list.Count(p => p.Truth == c && p.Predicted != c)))];
    }
}

/// <summary>Results of one time step: accuracy per method at the end of the step, FedDAA's clusters and detections.</summary>
public sealed record ScenarioStep(
    int TimeStep,
    IReadOnlyDictionary<string, double> Accuracy,
    int FedDaaClusters,
    int FedDaaBestK,
    IReadOnlyDictionary<int, double> Silhouettes,
    IReadOnlyList<DetectionScore> Detection,
    IReadOnlyList<DeviceDetection> Devices,
    double Seconds);

/// <summary>Ground truth and FedDAA's verdict for one device at one step.</summary>
public sealed record DeviceDetection(int Device, DriftClass Truth, DriftClass Predicted, int PreviousCentre, int CurrentCentre, double RowAlignment, float LabelShift, float FeatureShift, double LossIncrease);

/// <summary>Progress after each round.</summary>
public sealed record ScenarioProgress(int TimeStep, int Round, IReadOnlyDictionary<string, double> TrainLoss, int FedDaaModels, double Seconds);

/// <summary>A whole run.</summary>
public sealed record ScenarioResult(DriftScenario Scenario, IReadOnlyList<ScenarioStep> Steps, IReadOnlyList<DetectionScore> Detection, double Seconds)
{
    public IReadOnlyList<string> Methods => [.. Steps[0].Accuracy.Keys];

    /// <summary>Mean over time steps of a method's end-of-step accuracy.</summary>
    public double MeanAccuracy(string method) => Steps.Average(s => s.Accuracy[method]);
}

/// <summary>
/// The drift research harness: runs FedAvg, IFCA (fixed k) and FedDAA side by side on the same windows and the same
/// device samples, in process, directly on the training engine (<see cref="Training.OnnxTrainer"/>) and the
/// aggregation library — no MQTT, no cloud silo. Per time step it reports each method's accuracy (end of the step,
/// mean over all devices' test windows), FedDAA's cluster count and its drift-detection precision/recall per class
/// against the scenario's ground truth.
/// </summary>
public static class ScenarioRunner
{
    public static ScenarioResult Run(DriftScenario scenario, ScenarioData data, Action<ScenarioProgress>? onRound = null, Action<ScenarioStep>? onStep = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        ArgumentNullException.ThrowIfNull(data);
        scenario.Validate();
        var total = Stopwatch.StartNew();
        using var engine = new ModelEngine(scenario, data.SampleShape);
        var fedDaa = new FedDaaMethod(engine, scenario.Seed, scenario.LocalEpochs, scenario.Devices, scenario.WarmupRounds);
        ScenarioMethod[] methods =
        [
            new FedAvgMethod(engine, scenario.Seed, scenario.LocalEpochs),
            new IfcaMethod(engine, scenario.Seed, scenario.LocalEpochs, scenario.IfcaClusters),
            fedDaa,
        ];
        var sampler = new Random(scenario.Seed + 17);
        var perRound = Math.Max(1, (int)Math.Round(scenario.SampleRate * scenario.Devices));
        DeviceWindow[]? previous = null;
        var steps = new List<ScenarioStep>();
        var allPairs = new List<(DriftClass, DriftClass)>();
        for (var t = 0; t < scenario.TimeSteps; t++)
        {
            var stepClock = Stopwatch.StartNew();
            var current = new DeviceWindow[scenario.Devices];
            Parallel.For(0, scenario.Devices, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, scenario.Threads), CancellationToken = cancellationToken },
                d => current[d] = data.Window(d, t));
            foreach (var method in methods)
            {
                method.BeginStep(t, current, previous);
            }

            for (var round = 0; round < scenario.RoundsPerStep; round++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var devices = Enumerable.Range(0, scenario.Devices).ToArray();
                sampler.Shuffle(devices);
                var sampled = devices[..perRound];
                Array.Sort(sampled);
                var losses = new Dictionary<string, double>();
                foreach (var method in methods)
                {
                    losses[method.Name] = method.Round(t, round, sampled);
                }

                onRound?.Invoke(new ScenarioProgress(t, round, losses, fedDaa.ModelCount, total.Elapsed.TotalSeconds));
            }

            var accuracy = methods.ToDictionary(m => m.Name, m => current.Average(w => m.Accuracy(w)));
            var detections = new List<DeviceDetection>();
            if (fedDaa.Assessments is { } assessments)
            {
                for (var d = 0; d < scenario.Devices; d++)
                {
                    var a = assessments[d];
                    detections.Add(new DeviceDetection(d, scenario.TruthAt(d, t), a.Class, a.PreviousCentre, a.CurrentCentre, a.RowAlignment, a.LabelShift, a.FeatureShift, a.LossIncrease));
                }
            }

            var pairs = detections.Select(x => (x.Truth, x.Predicted)).ToList();
            allPairs.AddRange(pairs);
            var decision = fedDaa.LastDecision;
            var step = new ScenarioStep(t, accuracy, fedDaa.ModelCount, decision?.BestK ?? 1,
                decision?.Silhouettes ?? new Dictionary<int, double>(), DetectionScore.Score(pairs), detections, stepClock.Elapsed.TotalSeconds);
            steps.Add(step);
            onStep?.Invoke(step);
            previous = current;
        }

        return new ScenarioResult(scenario, steps, DetectionScore.Score(allPairs), total.Elapsed.TotalSeconds);
    }
}
