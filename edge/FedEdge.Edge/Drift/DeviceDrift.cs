using FedEdge.Edge.Identity;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using FedEdge.Storage;
using Microsoft.Extensions.Logging;

namespace FedEdge.Edge.Drift;

/// <summary>
/// The agent's FedDAA state: the forward pass shared by the drift monitor and the cluster planner, and the latest
/// verified <see cref="ClusterAssignment"/>, kept on disk (re-verified on load) so a restarted device without a broker
/// still trains its clusters.
/// </summary>
internal sealed class DeviceDrift : IDisposable
{
    private readonly string _assignmentPath;
    private readonly bool _fsync;

    public DeviceDrift(EdgeDriftOptions options, EdgeDeviceIdentity identity, string stateDirectory, bool fsync, ILoggerFactory loggers)
    {
        Forward = new ModelForwardPass(options.Threads);
        Monitor = new DriftMonitor(options, Forward, loggers.CreateLogger<DriftMonitor>());
        Planner = new ClusterTrainingPlanner(Forward);
        Verifier = new ClusterAssignmentVerifier(identity.Federation, identity.DeviceId, new VerificationKeyRing(identity.CloudKey));
        _assignmentPath = Path.Combine(stateDirectory, EdgeAgent.AssignmentFileName);
        _fsync = fsync;
        if (File.Exists(_assignmentPath))
        {
            var stored = Verifier.Verify(File.ReadAllBytes(_assignmentPath));
            if (stored.IsAccepted)
                Assignment = stored.Value;
        }
    }

    public ModelForwardPass Forward { get; }
    public DriftMonitor Monitor { get; }
    public ClusterTrainingPlanner Planner { get; }
    public ClusterAssignmentVerifier Verifier { get; }

    /// <summary>The latest verified assignment (null: the federation has not clustered this device).</summary>
    public ClusterAssignment? Assignment { get; private set; }

    /// <summary>Takes a verified assignment if its epoch is newer than the held one (a replayed old one is ignored).</summary>
    public bool Accept(ClusterAssignment assignment, byte[] signedBytes)
    {
        if (Assignment is not null && assignment.Epoch <= Assignment.Epoch)
            return false;
        AtomicFile.WriteAllBytes(_assignmentPath, signedBytes, _fsync);
        Assignment = assignment;
        return true;
    }

    public void Dispose() => Forward.Dispose();
}
