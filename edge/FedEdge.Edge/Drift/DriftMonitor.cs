using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge.Models;
using FedEdge.Protocol.Messages;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge.Drift;

/// <summary>What the device knows about its current data window after <see cref="DriftMonitor.Observe"/>.</summary>
/// <param name="LabelCounts">Label counts of the whole current window (R).</param>
/// <param name="Assessment">The verdict on the change to this window, set once: on the observation that judged it.</param>
/// <param name="PreviousCluster">Cluster of the centre nearest to the previous window's prototype (−1: no centres known).</param>
/// <param name="CurrentCluster">The same for the current window.</param>
public sealed record DriftObservation(long WindowIndex, int SampleCount, int LabelCount, int OutputDimension, long ReferenceVersion,
    WindowStatistics Current, WindowStatistics? Previous, float[] LabelCounts, DriftAssessment? Assessment, int PreviousCluster, int CurrentCluster);

/// <summary>
/// FedDAA's drift detection and adaptation on one device (Peng et al., arXiv 2506.21054, §4.2–4.3; algorithms.md §6).
/// With the reference model (cluster 0's verified model) it computes the <see cref="WindowStatistics"/> of the current
/// and previous data window over at most <see cref="EdgeDriftOptions.MaxStatisticsSamples"/> samples each (one forward
/// pass per window and reference version, cached). When the window changes it judges the change once with
/// <see cref="DriftClassifier"/> against the centres of the latest verified cluster assignment — without one, or when
/// the centres' shape differs from the prototypes', against no centres: label / virtual / none from the statistics
/// alone, centres reported as −1 — and picks the training data with <see cref="DriftAdaptation"/>: real drift → the
/// current window only, otherwise previous + current. Before the first verdict the device trains on the current
/// window. The verdict travels once as a <see cref="DriftReport"/> (<see cref="PendingReport"/>). Not thread-safe.
/// </summary>
public sealed partial class DriftMonitor
{
    private readonly EdgeDriftOptions _options;
    private readonly ModelForwardPass _forward;
    private readonly DriftClassifier _classifier;
    private readonly ILogger _logger;
    private readonly Dictionary<(long Window, long Version, int Labels), WindowStatistics> _statistics = [];
    private long _judgedWindow = -1;

    public DriftMonitor(EdgeDriftOptions options, ModelForwardPass forward, ILogger<DriftMonitor>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(forward);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxStatisticsSamples);
        _options = options;
        _forward = forward;
        _classifier = new DriftClassifier(options.Thresholds());
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The training data FedDAA's adaptation chose at the last verdict (current window only before any).</summary>
    public TrainingWindow TrainingWindow { get; private set; } = TrainingWindow.CurrentOnly;

    /// <summary>The last verdict (null before the first window change).</summary>
    public DriftAssessment? LastAssessment { get; private set; }

    /// <summary>Index of the last judged window (−1: none).</summary>
    public long JudgedWindow => _judgedWindow;

    /// <summary>The verdict not yet sent; cleared by <see cref="ReportSent"/> once an update carrying it is queued.</summary>
    public DriftReport? PendingReport { get; private set; }

    /// <summary>Raised with every verdict (on the caller's thread).</summary>
    public event Action<DriftObservation>? Judged;

    /// <summary>
    /// Statistics of the current (and previous) window with <paramref name="reference"/>, judging the window change if
    /// this window was not judged yet. <paramref name="assignment"/> is the latest verified cluster assignment (null: none yet).
    /// </summary>
    public DriftObservation Observe(VerifiedModel reference, EdgeWindowPair windows, ClusterAssignment? assignment, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(windows);
        var outputs = _forward.Load(reference);
        var labels = assignment is { LabelCount: > 0 } ? assignment.LabelCount : outputs;
        var current = Statistics(reference, windows.Current, labels);
        var previous = windows.Previous is { } p ? Statistics(reference, p, labels) : null;
        // Only the last two windows can be asked for again.
        foreach (var key in _statistics.Keys.Where(k => k.Window != windows.Current.Index && k.Window != windows.Previous?.Index || k.Version != reference.Version).ToList())
            _statistics.Remove(key);

        DriftAssessment? assessment = null;
        int previousCluster = -1, currentCluster = -1;
        // "Not the judged one" rather than "newer": a host that starts its window count again is a new data source.
        if (previous is not null && windows.Current.Index != _judgedWindow)
        {
            var centres = CentresFor(assignment, labels, outputs);
            if (centres is { } known)
            {
                assessment = _classifier.Classify(previous, current, known.Values, known.Clusters.Length);
                (previousCluster, currentCluster) = (known.Clusters[assessment.PreviousCentre], known.Clusters[assessment.CurrentCentre]);
            }
            else
            {
                // One zero centre: both windows fall to it, so only the statistics (label / virtual / none) decide.
                assessment = _classifier.Classify(previous, current, new float[labels * outputs], 1);
            }
            _judgedWindow = windows.Current.Index;
            LastAssessment = assessment;
            TrainingWindow = DriftAdaptation.Decide(assessment.Class);
            PendingReport = new DriftReport
            {
                Kind = KindOf(assessment.Class),
                WindowIndex = windows.Current.Index,
                DetectedUnixMs = now.ToUnixTimeMilliseconds(),
                PreviousCentre = previousCluster,
                CurrentCentre = currentCluster,
                LabelShift = assessment.LabelShift,
                FeatureShift = assessment.FeatureShift,
                SampleCount = windows.Current.Train.Count,
            };
            LogVerdict(windows.Current.Index, assessment.Class, previousCluster, currentCluster, assessment.LabelShift, assessment.FeatureShift,
                assessment.PreviousLoss, assessment.CurrentLoss, TrainingWindow);
        }
        else if (previous is null && windows.Current.Index != _judgedWindow)
        {
            // A first window (or one whose predecessor is gone): nothing to compare, train on it alone.
            _judgedWindow = windows.Current.Index;
            TrainingWindow = TrainingWindow.CurrentOnly;
        }

        var observation = new DriftObservation(windows.Current.Index, windows.Current.Train.Count, labels, outputs, reference.Version,
            current, previous, LabelCounts(windows.Current.Train, labels), assessment, previousCluster, currentCluster);
        if (assessment is not null)
            Judged?.Invoke(observation);
        return observation;
    }

    /// <summary>Restores the last verdict's window and training-data choice after a restart (from the agent's progress file).</summary>
    public void Restore(long judgedWindow, TrainingWindow trainingWindow)
    {
        _judgedWindow = judgedWindow;
        TrainingWindow = trainingWindow;
    }

    /// <summary>Marks <see cref="PendingReport"/> as sent (an update carrying it was queued).</summary>
    public void ReportSent() => PendingReport = null;

    /// <summary>The statistics part of an update envelope (cluster fields are added by the cluster trainer).</summary>
    public static DriftStatistics ToMessage(DriftObservation observation)
    {
        ArgumentNullException.ThrowIfNull(observation);
        var message = new DriftStatistics
        {
            WindowIndex = observation.WindowIndex,
            SampleCount = observation.SampleCount,
            LabelCount = observation.LabelCount,
            OutputDimension = observation.OutputDimension,
        };
        message.Prototype.AddRange(observation.Current.Prototype.Values);
        if (observation.Previous is { } previous)
            message.PreviousPrototype.AddRange(previous.Prototype.Values);
        message.LabelHistogram.AddRange(observation.LabelCounts);
        return message;
    }

    public static DriftKind KindOf(DriftClass drift) => drift switch
    {
        DriftClass.None => DriftKind.None,
        DriftClass.Real => DriftKind.Real,
        DriftClass.Virtual => DriftKind.Virtual,
        DriftClass.Label => DriftKind.Label,
        _ => DriftKind.Unspecified,
    };

    private WindowStatistics Statistics(VerifiedModel reference, EdgeDataWindow window, int labels)
    {
        var key = (window.Index, reference.Version, labels);
        if (_statistics.TryGetValue(key, out var cached))
            return cached;
        var data = window.Train;
        var indices = EvenlySpaced(data.Count, _options.MaxStatisticsSamples);
        var logits = _forward.Logits(reference, data, indices);
        var x = new float[indices.Length * data.SampleSize];
        var y = new long[indices.Length];
        data.CopyBatch(indices, x, y);
        foreach (var label in y)
        {
            if ((ulong)label >= (ulong)labels)
                throw new InvalidOperationException($"Window {window.Index} has label {label}, outside the {labels} labels of the prototypes.");
        }
        var statistics = WindowStatistics.Compute(x, y, logits, labels, _forward.OutputDimension);
        _statistics[key] = statistics;
        return statistics;
    }

    /// <summary>The centres of <paramref name="assignment"/> with their cluster ids, if their shape is R × D.</summary>
    private (float[] Values, int[] Clusters)? CentresFor(ClusterAssignment? assignment, int labels, int outputs)
    {
        if (assignment is null || assignment.CentreClusters.Count == 0)
            return null;
        if (assignment.LabelCount != labels || assignment.OutputDimension != outputs)
        {
            LogCentresUnusable(assignment.Epoch, assignment.LabelCount, assignment.OutputDimension, labels, outputs);
            return null;
        }
        return ([.. assignment.Centres], [.. assignment.CentreClusters]);
    }

    private static float[] LabelCounts(Dataset data, int labels)
    {
        var counts = new float[labels];
        foreach (var y in data.Labels)
        {
            if ((ulong)y < (ulong)labels)
                counts[y]++;
        }
        return counts;
    }

    /// <summary>At most <paramref name="max"/> indices spread evenly over [0, n) (all when n ≤ max): no RNG, no ordering bias.</summary>
    internal static int[] EvenlySpaced(int n, int max)
    {
        var m = Math.Min(n, max);
        var indices = new int[m];
        for (var i = 0; i < m; i++)
            indices[i] = (int)((long)i * n / m);
        return indices;
    }

    [LoggerMessage(EventId = 520, Level = LogLevel.Information, Message = "Drift verdict for data window {Window}: {Class} (nearest cluster {PreviousCluster} -> {CurrentCluster}, label shift {LabelShift:F3}, feature shift {FeatureShift:F3}, reference loss {PreviousLoss:F3} -> {CurrentLoss:F3}); training on {TrainingWindow}")]
    private partial void LogVerdict(long window, DriftClass @class, int previousCluster, int currentCluster, float labelShift, float featureShift, double previousLoss, double currentLoss, TrainingWindow trainingWindow);

    [LoggerMessage(EventId = 521, Level = LogLevel.Warning, Message = "Cluster centres of assignment epoch {Epoch} are {CentreLabels} x {CentreOutputs}, the device's prototypes {Labels} x {Outputs}; judging drift without centres")]
    private partial void LogCentresUnusable(long epoch, int centreLabels, int centreOutputs, int labels, int outputs);
}
