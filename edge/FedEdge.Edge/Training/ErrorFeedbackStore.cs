using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge.Training;

/// <summary>
/// The device's error-feedback memory (e, g or e and h; algorithms.md §1) on disk, so it survives restarts.
/// A stored state is reused only when its scheme, codec and dimension match the current configuration and
/// model; otherwise (or when the file is corrupt) the agent starts from a zero state and says so.
/// </summary>
public sealed partial class ErrorFeedbackStore
{
    private readonly string _path;
    private readonly bool _fsync;
    private readonly ILogger _logger;

    public ErrorFeedbackStore(string path, bool fsync = true, ILogger<ErrorFeedbackStore>? logger = null)
    {
        _path = path;
        _fsync = fsync;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The stored state if it fits (<paramref name="kind"/>, <paramref name="codec"/>, <paramref name="dimension"/>), else a fresh one.</summary>
    public ErrorFeedbackCompressor LoadOrCreate(ErrorFeedbackKind kind, IUpdateCodec codec, int dimension, float eta)
    {
        if (File.Exists(_path))
        {
            var check = ErrorFeedbackState.TryDeserialize(File.ReadAllBytes(_path), out var stored);
            if (stored is null)
            {
                LogStateDiscarded(_path, $"unreadable: {check}");
            }
            else if (stored.Kind != kind || stored.Codec.Spec != codec.Spec || stored.Dimension != dimension)
            {
                LogStateDiscarded(_path, $"it is {stored.Name}/{stored.Codec.Spec}/d={stored.Dimension}, now {ErrorFeedbackCompressor.NameOf(kind)}/{codec.Spec}/d={dimension}");
            }
            else
            {
                LogStateLoaded(_path, stored.Name, stored.Rounds);
                return stored;
            }
        }
        return ErrorFeedbackCompressor.Create(kind, codec, dimension, eta);
    }

    /// <summary>Persists the state atomically.</summary>
    public void Save(ErrorFeedbackCompressor state) => AtomicFile.WriteAllBytes(_path, ErrorFeedbackState.Serialize(state), _fsync);

    [LoggerMessage(EventId = 410, Level = LogLevel.Information, Message = "Error-feedback state {Path} loaded ({Scheme}, {Rounds} rounds so far)")]
    private partial void LogStateLoaded(string path, string scheme, long rounds);

    [LoggerMessage(EventId = 411, Level = LogLevel.Warning, Message = "Error-feedback state {Path} not reused ({Why}); starting from zero")]
    private partial void LogStateDiscarded(string path, string why);
}
