using System.Security.Cryptography;
using FedEdge.Protocol;
using FedEdge.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge.Models;

/// <summary>
/// Keeps the last verified global model on disk so the agent restarts with it: <c>model-{version}.bin</c> and
/// the signed announcement <c>model.announcement</c>, written in that order (each atomically), so the
/// announcement never names bytes that are not there. On load both are verified again (cloud signature, then
/// SHA-256), so a corrupted or tampered file is never used.
/// </summary>
public sealed partial class ModelStore
{
    private const string AnnouncementFile = "model.announcement";
    private readonly string _directory;
    private readonly ModelAnnouncementVerifier _verifier;
    private readonly bool _fsync;
    private readonly ILogger _logger;
    private readonly int _cluster;

    /// <param name="cluster">The model stream stored here (0 = the federation's model); a stored announcement of another cluster is not used.</param>
    public ModelStore(string directory, ModelAnnouncementVerifier verifier, bool fsync = true, ILogger<ModelStore>? logger = null, int cluster = 0)
    {
        _cluster = cluster;
        _directory = directory;
        _verifier = verifier;
        _fsync = fsync;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        Directory.CreateDirectory(directory);
        AtomicFile.DeleteLeftovers(directory);
    }

    public void Save(VerifiedModel model)
    {
        AtomicFile.WriteAllBytes(ModelPath(model.Version), model.ModelBytes, _fsync);
        AtomicFile.WriteAllBytes(Path.Combine(_directory, AnnouncementFile), model.AnnouncementBytes, _fsync);
        foreach (var old in Directory.EnumerateFiles(_directory, "model-*.bin"))
        {
            if (!string.Equals(Path.GetFileName(old), Path.GetFileName(ModelPath(model.Version)), StringComparison.Ordinal))
                File.Delete(old);
        }
    }

    /// <summary>The stored model if there is one and it still verifies; null otherwise (with a log line saying why).</summary>
    public VerifiedModel? TryLoad()
    {
        var announcementPath = Path.Combine(_directory, AnnouncementFile);
        if (!File.Exists(announcementPath))
            return null;
        var announcementBytes = File.ReadAllBytes(announcementPath);
        var announcement = _verifier.Verify(announcementBytes);
        if (!announcement.IsAccepted)
        {
            LogStoredRejected(announcementPath, announcement.Reason.ToString(), announcement.Message ?? "");
            return null;
        }
        if (announcement.Value.Cluster != _cluster)
        {
            LogStoredRejected(announcementPath, nameof(RejectReason.Inconsistent), $"it announces cluster {announcement.Value.Cluster}, this store holds cluster {_cluster}");
            return null;
        }
        var modelPath = ModelPath(announcement.Value.ModelVersion);
        if (!File.Exists(modelPath))
        {
            LogStoredRejected(modelPath, "Missing", "the announced model file is not there");
            return null;
        }
        var bytes = File.ReadAllBytes(modelPath);
        if (bytes.LongLength != announcement.Value.TotalSize || !SHA256.HashData(bytes).AsSpan().SequenceEqual(announcement.Value.ModelSha256.Span))
        {
            LogStoredRejected(modelPath, nameof(RejectReason.HashMismatch), "the stored bytes do not match the signed SHA-256");
            return null;
        }
        return new VerifiedModel(announcement.Value, announcementBytes, bytes);
    }

    private string ModelPath(long version) => Path.Combine(_directory, $"model-{version}.bin");

    [LoggerMessage(EventId = 300, Level = LogLevel.Warning, Message = "Stored model {Path} not used ({Reason}): {Detail}")]
    private partial void LogStoredRejected(string path, string reason, string detail);
}
