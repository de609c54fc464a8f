using FedEdge.Data;

namespace FedEdge.Drift.Scenarios;

/// <summary>What a device's data looks like at one time step: label map, rotation and label mix.</summary>
/// <param name="LabelMap">Index into FedDAA's four label maps: 0: y, 1: C−1−y, 2: (y+1) mod C, 3: (y+2) mod C.</param>
/// <param name="RotationDegrees">Image rotation (virtual drift).</param>
/// <param name="LabelMix">−1: the data set's own (balanced) label mix; otherwise the index of a skewed mix (label drift).</param>
public readonly record struct DeviceConcept(int LabelMap, int RotationDegrees, int LabelMix);

/// <summary>
/// A drift scenario on Fashion-MNIST after FedDAA's benchmark (arXiv 2506.21054, official code): devices hold an IID
/// class split; device blocks 0–¼N, ¼N–½N, … start with the label maps y, C−1−y, (y+1) mod C, (y+2) mod C (four
/// concepts); over T time steps some devices drift. Each device has a drift kind by index (device mod slots): real drift
/// (its block's label map advances by one at every even step 2, 4, …), virtual drift (rotation 0° → 120° → 240°
/// cycling with the step), label drift (a different skewed label mix every step), or none (stable devices, which make
/// false detections visible). The in-process runner (<see cref="ScenarioRunner"/>) trains on the training engine and
/// the aggregation library directly, without MQTT.
/// </summary>
public sealed record DriftScenario
{
    public required string Name { get; init; }

    public int Devices { get; init; } = 60;

    public int TimeSteps { get; init; } = 6;

    public int RoundsPerStep { get; init; } = 40;

    /// <summary>Fraction of devices sampled per round.</summary>
    public double SampleRate { get; init; } = 0.5;

    public float LearningRate { get; init; } = 0.06f;

    public int BatchSize { get; init; } = 128;

    public int LocalEpochs { get; init; } = 1;

    /// <summary>Zoo model (cnn, mlp, logreg).</summary>
    public string Model { get; init; } = "cnn";

    /// <summary>Training samples per device and time step (drawn from the device's IID share).</summary>
    public int TrainSamples { get; init; } = 500;

    /// <summary>Test samples per device and time step (from the device's share of the test set, same concept).</summary>
    public int TestSamples { get; init; } = 200;

    public bool RealDrift { get; init; } = true;

    public bool VirtualDrift { get; init; } = true;

    public bool LabelDrift { get; init; } = true;

    /// <summary>Number of clusters of the IFCA baseline (fixed).</summary>
    public int IfcaClusters { get; init; } = 4;

    /// <summary>FedDAA rounds at step 0 with one model before the first clustering (prototypes of an untrained model mean nothing).</summary>
    public int WarmupRounds { get; init; } = 10;

    public int Seed { get; init; }

    /// <summary>ONNX Runtime threads for training and inference.</summary>
    public int Threads { get; init; } = 1;

    public const int ClassCount = 10;

    /// <summary>Drift mixes: all three kinds, or one kind only (plus stable devices).</summary>
    public static IReadOnlyList<string> Mixes { get; } = ["feddaa-fmnist", "feddaa-fmnist-real", "feddaa-fmnist-virtual", "feddaa-fmnist-label"];

    /// <summary>Scales appended to a mix: "" (the paper's setup, CNN), "-mlp" (same setup, MLP), "-small" (minutes on 2 cores), "-tiny" (seconds).</summary>
    public static IReadOnlyList<string> Scales { get; } = ["", "-mlp", "-small", "-tiny"];

    /// <summary>Every preset name: a mix followed by a scale, e.g. feddaa-fmnist, feddaa-fmnist-small, feddaa-fmnist-real-small.</summary>
    public static IReadOnlyList<string> Presets { get; } = [.. Mixes.SelectMany(m => Scales.Select(s => m + s))];

    public static DriftScenario Preset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var scale = Scales.Where(s => s.Length > 0 && name.EndsWith(s, StringComparison.Ordinal)).FirstOrDefault() ?? "";
        var mix = name[..^scale.Length];
        var paper = new DriftScenario { Name = name };
        var scenario = mix switch
        {
            "feddaa-fmnist" => paper,
            "feddaa-fmnist-real" => paper with { VirtualDrift = false, LabelDrift = false },
            "feddaa-fmnist-virtual" => paper with { RealDrift = false, LabelDrift = false },
            "feddaa-fmnist-label" => paper with { RealDrift = false, VirtualDrift = false },
            _ => throw new ArgumentException($"Unknown scenario '{name}'. Known: {string.Join(", ", Presets)}.", nameof(name)),
        };
        return scale switch
        {
            "-mlp" => scenario with { Model = "mlp" },
            // A minute or two on 2 cores: 24 devices (4 blocks of 6), 4 steps × 12 rounds, an MLP.
            "-small" => scenario with
            {
                Devices = 24,
                TimeSteps = 4,
                RoundsPerStep = 12,
                Model = "mlp",
                BatchSize = 32,
                TrainSamples = 300,
                TestSamples = 150,
                WarmupRounds = 6,
            },
            // Seconds (the end-to-end test): 12 devices, all sampled, logistic regression, 3 steps × 6 rounds.
            "-tiny" => scenario with
            {
                Devices = 12,
                TimeSteps = 3,
                RoundsPerStep = 6,
                Model = "logreg",
                BatchSize = 32,
                TrainSamples = 200,
                TestSamples = 100,
                WarmupRounds = 3,
                SampleRate = 1.0,
                LearningRate = 0.1f,
            },
            _ => scenario,
        };
    }

    public void Validate()
    {
        if (Devices < 8)
        {
            throw new ArgumentOutOfRangeException(nameof(Devices), Devices, "A drift scenario needs at least 8 devices (4 concept blocks of 2).");
        }

        if (TimeSteps < 2 || RoundsPerStep < 1 || WarmupRounds < 1 || WarmupRounds >= RoundsPerStep)
        {
            throw new ArgumentOutOfRangeException(nameof(TimeSteps), $"Need ≥ 2 time steps, ≥ 1 round per step and 1 ≤ warm-up rounds ({WarmupRounds}) < rounds per step ({RoundsPerStep}).");
        }

        if (!(SampleRate is > 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(SampleRate), SampleRate, "The sampling rate must be in (0, 1].");
        }

        if (TrainSamples < BatchSize / 2 || TestSamples < 10)
        {
            throw new ArgumentOutOfRangeException(nameof(TrainSamples), $"Train samples ({TrainSamples}) must be ≥ half a batch ({BatchSize}), test samples ≥ 10.");
        }

        if (IfcaClusters < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(IfcaClusters), IfcaClusters, "IFCA needs at least one cluster.");
        }
    }

    /// <summary>The drift kinds devices are assigned to (in this order), then one slot of stable devices.</summary>
    public IReadOnlyList<DriftClass> DriftKinds =>
        [.. new[] { (RealDrift, DriftClass.Real), (VirtualDrift, DriftClass.Virtual), (LabelDrift, DriftClass.Label) }.Where(k => k.Item1).Select(k => k.Item2)];

    /// <summary>The drift kind device <paramref name="device"/> undergoes (None for stable devices).</summary>
    public DriftClass KindOf(int device)
    {
        var kinds = DriftKinds;
        var slot = device % (kinds.Count + 1);
        return slot < kinds.Count ? kinds[slot] : DriftClass.None;
    }

    /// <summary>Concept block of a device (0–3), which fixes its label map at step 0.</summary>
    public int BlockOf(int device) => device * 4 / Devices;

    public DeviceConcept ConceptAt(int device, int t)
    {
        var kind = KindOf(device);
        var map = (BlockOf(device) + (kind == DriftClass.Real ? t / 2 : 0)) % 4;
        var rotation = kind == DriftClass.Virtual ? 120 * (t % 3) : 0;
        var mix = kind == DriftClass.Label ? t : -1;
        return new DeviceConcept(map, rotation, mix);
    }

    /// <summary>Ground truth for the change into step <paramref name="t"/> (t ≥ 1): real over virtual over label.</summary>
    public DriftClass TruthAt(int device, int t)
    {
        var before = ConceptAt(device, t - 1);
        var now = ConceptAt(device, t);
        return now.LabelMap != before.LabelMap ? DriftClass.Real
            : now.RotationDegrees != before.RotationDegrees ? DriftClass.Virtual
            : now.LabelMix != before.LabelMix ? DriftClass.Label
            : DriftClass.None;
    }

    /// <summary>FedDAA's label map <paramref name="index"/> for C classes.</summary>
    public static long[] LabelMapOf(int index) => index switch
    {
        0 => DataTransforms.ShiftMap(ClassCount, 0),
        1 => DataTransforms.ReverseMap(ClassCount),
        2 => DataTransforms.ShiftMap(ClassCount, 1),
        3 => DataTransforms.ShiftMap(ClassCount, 2),
        _ => throw new ArgumentOutOfRangeException(nameof(index), index, "FedDAA has four label maps (0–3)."),
    };

    /// <summary>
    /// Class weights of skewed label mix <paramref name="mix"/>: 80 % of the mass on three classes starting at 3·mix,
    /// 20 % spread over the other seven; consecutive mixes share no favoured class (total-variation distance ≈ 0.71).
    /// </summary>
    public static double[] LabelMixOf(int mix)
    {
        var weights = new double[ClassCount];
        Array.Fill(weights, 0.2 / (ClassCount - 3));
        for (var j = 0; j < 3; j++)
        {
            weights[(3 * mix + j) % ClassCount] = 0.8 / 3;
        }

        return weights;
    }
}
