namespace FedEdge.Edge;

/// <summary>Counters of one agent, safe to read from any thread (the simulator's round table reads them).</summary>
public sealed class EdgeAgentStatistics
{
    private long _rounds;
    private long _updatesEnqueued;
    private long _updatesRefused;
    private long _modelsVerified;
    private long _modelMessagesRejected;
    private long _driftVerdicts;
    private long _declinesEnqueued;
    private long _outages;
    private long _plannedAssignmentEpoch = -1;

    public long Rounds => Interlocked.Read(ref _rounds);
    public long UpdatesEnqueued => Interlocked.Read(ref _updatesEnqueued);

    /// <summary>Updates not queued because the outbox was full or could not be written.</summary>
    public long UpdatesRefused => Interlocked.Read(ref _updatesRefused);

    public long ModelsVerified => Interlocked.Read(ref _modelsVerified);

    /// <summary>Model announcements, chunks and assembled models rejected (bad signature, hash, ...).</summary>
    public long ModelMessagesRejected => Interlocked.Read(ref _modelMessagesRejected);

    /// <summary>Declines queued: cluster model versions none of the local samples drew (FedDAA, <see cref="FedEdge.Protocol.UpdateDeclines"/>).</summary>
    public long DeclinesEnqueued => Interlocked.Read(ref _declinesEnqueued);

    /// <summary>Data windows judged by the drift monitor (FedDAA).</summary>
    public long DriftVerdicts => Interlocked.Read(ref _driftVerdicts);

    /// <summary>Simulated outages begun (<see cref="Training.IDeviceSpeed"/>; always 0 on a real device).</summary>
    public long Outages => Interlocked.Read(ref _outages);

    /// <summary>
    /// The cluster-assignment epoch the latest training pass planned with (-1 before any): a pass begins after every
    /// event received before it was handled, so an operator or a test sees which assignment the device is acting on.
    /// </summary>
    public long PlannedAssignmentEpoch => Interlocked.Read(ref _plannedAssignmentEpoch);

    /// <summary>Training sessions built so far; stays at 1 while new versions only change weights.</summary>
    public int TrainingSessionBuilds { get; internal set; }

    internal void PassPlanned(long assignmentEpoch) => Interlocked.Exchange(ref _plannedAssignmentEpoch, assignmentEpoch);
    internal void RoundCompleted() => Interlocked.Increment(ref _rounds);
    internal void UpdateEnqueued() => Interlocked.Increment(ref _updatesEnqueued);
    internal void UpdateRefused() => Interlocked.Increment(ref _updatesRefused);
    internal void ModelVerified() => Interlocked.Increment(ref _modelsVerified);
    internal void ModelMessageRejected() => Interlocked.Increment(ref _modelMessagesRejected);
    internal void DriftJudged() => Interlocked.Increment(ref _driftVerdicts);
    internal void DeclineEnqueued() => Interlocked.Increment(ref _declinesEnqueued);
    internal void OutageStarted() => Interlocked.Increment(ref _outages);
}

/// <summary>What one local round produced, raised by <see cref="EdgeAgent.RoundCompleted"/>.</summary>
/// <param name="UpdateId">Hex update id, or null when the update was not queued.</param>
/// <param name="PayloadBytes">Codec payload size (before envelope and signature).</param>
/// <param name="EnvelopeBytes">Signed envelope size.</param>
/// <param name="Cluster">The model stream trained (0 = the federation's model, c &gt; 0 = cluster model c).</param>
public sealed record EdgeRoundReport(string DeviceId, long BaseVersion, string? UpdateId, double Loss, double Accuracy, long Steps, TimeSpan TrainingTime, int PayloadBytes, int EnvelopeBytes, int Cluster = 0);
