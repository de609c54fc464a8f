namespace FedEdge.Drift;

/// <summary>Source of a concept drift (FedDAA, arXiv 2506.21054, §3).</summary>
public enum DriftClass
{
    /// <summary>No drift detected.</summary>
    None,

    /// <summary>P(y|x) changed: the same inputs now mean other labels. Old data is harmful.</summary>
    Real,

    /// <summary>P(x) changed (e.g. the sensor or camera angle moved) with the same labelling. Old data still helps.</summary>
    Virtual,

    /// <summary>P(y) changed (another label mix) with the same labelling. Old data still helps.</summary>
    Label,
}

/// <summary>Thresholds of <see cref="DriftClassifier"/> for the statistics-based virtual/label split.</summary>
public sealed record DriftThresholds
{
    /// <summary>Total-variation distance of the label histograms above which P(y) is taken to have changed.</summary>
    public float LabelShift { get; init; } = 0.2f;

    /// <summary>Mean standardised feature-mean difference above which P(x) is taken to have changed.</summary>
    public float FeatureShift { get; init; } = 0.3f;

    /// <summary>
    /// FedEdge's guard on the centre rule: when the features moved by more than <see cref="FeatureShift"/>, a change of
    /// nearest centre is attributed to the input shift (virtual drift) rather than to P(y|x). With the cluster count
    /// chosen by silhouette, k-means also splits devices by P(x), and a strong input change (FMNIST rotated by 120°)
    /// scrambles the reference model's logits so much that the prototype rows look remapped: measured on
    /// feddaa-fmnist-small, rotated devices changed centre in every step and their row alignment was 0–0.4, like
    /// relabelled ones, while their feature shift was 0.35–0.39 against 0.05–0.07 for relabelled devices. Cost: a device
    /// whose labels and inputs change at the same time is reported as virtual drift. False gives the paper's rule
    /// (centre change alone means real drift).
    /// </summary>
    public bool InputShiftExplainsCentreChange { get; init; } = true;
}

/// <summary>
/// Evidence and verdict for one device and one window change: the centres nearest to the old and new prototypes,
/// the label and feature shifts, and the loss of the reference model on the old and new window.
/// </summary>
public sealed record DriftAssessment(DriftClass Class, int PreviousCentre, int CurrentCentre, double RowAlignment, float LabelShift, float FeatureShift, double PreviousLoss, double CurrentLoss)
{
    public bool Detected => Class != DriftClass.None;

    /// <summary>Loss of the reference model on the new window minus that on the old one.</summary>
    public double LossIncrease => CurrentLoss - PreviousLoss;
}

/// <summary>
/// FedDAA's real-drift detection module (arXiv 2506.21054, §4.2): the device builds prototypes of its previous and
/// current window with the current reference model and sends both to their nearest cluster centre; different centres
/// mean real drift (P(y|x) changed), the same centre means virtual or label drift. FedEdge attributes a centre change
/// that comes with a large feature shift to the input shift (<see cref="DriftThresholds.InputShiftExplainsCentreChange"/>).
/// The paper stops there; to tell
/// virtual from label drift (and no drift) FedEdge uses the window statistics: a label-histogram shift above
/// <see cref="DriftThresholds.LabelShift"/> is label drift (checked first, since a new label mix also moves the mean
/// image), else a feature shift above <see cref="DriftThresholds.FeatureShift"/> is virtual drift, else no drift.
/// Centres are compared over the labels present in both windows (<see cref="Prototype.SharedRows"/>), so a label that
/// disappears does not masquerade as a new concept.
/// </summary>
public sealed class DriftClassifier
{
    public DriftClassifier(DriftThresholds? thresholds = null)
    {
        Thresholds = thresholds ?? new DriftThresholds();
    }

    public DriftThresholds Thresholds { get; }

    /// <summary>Classifies the change from <paramref name="previous"/> to <paramref name="current"/> against k centres (k × R·D).</summary>
    public DriftAssessment Classify(WindowStatistics previous, WindowStatistics current, ReadOnlySpan<float> centres, int k)
    {
        ArgumentNullException.ThrowIfNull(previous);
        ArgumentNullException.ThrowIfNull(current);
        var shared = Prototype.SharedRows(previous.Prototype, current.Prototype);
        var oldCentre = previous.Prototype.NearestCentre(centres, k, shared);
        var newCentre = current.Prototype.NearestCentre(centres, k, shared);
        var labelShift = WindowStatistics.LabelShift(previous, current);
        var featureShift = WindowStatistics.FeatureShift(previous, current);
        var alignment = Prototype.RowAlignment(previous.Prototype, current.Prototype);
        var inputsMoved = featureShift > Thresholds.FeatureShift;
        var verdict = oldCentre != newCentre && !(inputsMoved && Thresholds.InputShiftExplainsCentreChange) ? DriftClass.Real
            : labelShift > Thresholds.LabelShift ? DriftClass.Label
            : featureShift > Thresholds.FeatureShift ? DriftClass.Virtual
            : DriftClass.None;
        return new DriftAssessment(verdict, oldCentre, newCentre, alignment, labelShift, featureShift, previous.MeanLoss, current.MeanLoss);
    }
}

/// <summary>Which data a device trains on after a drift verdict.</summary>
public enum TrainingWindow
{
    /// <summary>Only the current window (old data dropped).</summary>
    CurrentOnly,

    /// <summary>The previous and the current window together (one previous window kept).</summary>
    PreviousAndCurrent,
}

/// <summary>
/// FedDAA's concept-drift adaptation module (arXiv 2506.21054, §4.3): real drift makes the old labels wrong, so the
/// old window is dropped; virtual or label drift keeps the labelling, so the previous window is kept and trained on
/// together with the new one, which is what avoids forgetting. Without drift, history is kept as well.
/// </summary>
public static class DriftAdaptation
{
    public static TrainingWindow Decide(DriftClass drift) => drift == DriftClass.Real ? TrainingWindow.CurrentOnly : TrainingWindow.PreviousAndCurrent;
}
