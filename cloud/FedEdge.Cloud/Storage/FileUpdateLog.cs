using FedEdge.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace FedEdge.Cloud.Storage;

/// <summary>
/// The update log in append-only files (the default, next to the SQLite state): a directory per model grain under
/// the data directory, a file per segment (<c>update-log/{model}/{segment}.log</c>), a record per update
/// (<see cref="UpdateLogRecord"/>). An accepted update costs one write of its envelope, where a grain-storage record
/// cost a serialized row in SQLite's WAL, its checkpoint copy and its delete; a dropped segment is one file deletion.
/// <para>
/// Every file operation runs on one writer thread that group-commits (<see cref="GroupCommitQueue{TItem, TResult}"/>):
/// the appends queued while a batch is being made durable are written together and each file they touched is flushed
/// to disk once, so an append completes only when it would survive a power loss (with <c>flushToDisk</c>; without it,
/// a crash of the process). A crash mid-append leaves a torn last record, never acknowledged; opening the segment cuts
/// it off. A failed write is cut off at once; a file whose flush failed takes no more appends until it is reopened.
/// </para>
/// </summary>
public sealed class FileUpdateLog : IUpdateLog, IDisposable
{
    private const string Extension = ".log";
    private readonly string _root;
    private readonly bool _flushToDisk;
    private readonly int _maxEnvelopeBytes;
    private readonly ILogger<FileUpdateLog> _logger;
    private readonly GroupCommitQueue<Operation, IReadOnlyList<LoggedUpdate>> _queue;

    // Owned by the writer thread.
    private readonly Dictionary<string, Segment> _open = new(StringComparer.Ordinal);
    private readonly HashSet<string> _unusable = new(StringComparer.Ordinal);
    private readonly HashSet<Segment> _touched = [];
    private readonly HashSet<string> _changedDirectories = new(StringComparer.Ordinal);

    /// <param name="root">The log's directory.</param>
    /// <param name="flushToDisk">Flush each batch to the disk (power-loss safe) rather than to the OS only (crash safe).</param>
    /// <param name="maxEnvelopeBytes">The largest envelope a record may hold (larger lengths mark a damaged record).</param>
    public FileUpdateLog(string root, bool flushToDisk, int maxEnvelopeBytes, ILogger<FileUpdateLog> logger)
    {
        _root = Path.GetFullPath(root);
        _flushToDisk = flushToDisk;
        _maxEnvelopeBytes = maxEnvelopeBytes;
        _logger = logger;
        Directory.CreateDirectory(_root);
        _queue = new GroupCommitQueue<Operation, IReadOnlyList<LoggedUpdate>>(Commit, maxBatch: 512, name: "update-log");
    }

    public async Task<IModelUpdateLog> OpenAsync(string model, long pending, CancellationToken cancellationToken = default)
    {
        var directory = Path.Combine(_root, Uri.EscapeDataString(model));
        var recovered = await _queue.EnqueueAsync(new Open(directory, pending)).WaitAsync(cancellationToken);
        return new ModelLog(this, directory, recovered);
    }

    private sealed class ModelLog(FileUpdateLog log, string directory, IReadOnlyList<LoggedUpdate> recovered) : IModelUpdateLog
    {
        public IReadOnlyList<LoggedUpdate> Recovered { get; } = recovered;

        public Task AppendAsync(long segment, LoggedUpdate update)
        {
            if (update.Envelope.Length > log._maxEnvelopeBytes)
                throw new ArgumentException($"Envelope of {update.Envelope.Length} bytes exceeds the log's limit of {log._maxEnvelopeBytes}", nameof(update));
            // Encoded (and hashed) here, on the caller's thread, so the writer thread only writes.
            return log._queue.EnqueueAsync(new Append(directory, segment, UpdateLogRecord.EncodeHead(update), update.Envelope));
        }

        public Task DropThroughAsync(long segment) => log._queue.EnqueueAsync(new Drop(directory, segment));
    }

    private abstract record Operation(string Directory);

    private sealed record Append(string Directory, long Segment, byte[] Head, ReadOnlyMemory<byte> Envelope) : Operation(Directory);

    private sealed record Drop(string Directory, long Through) : Operation(Directory);

    private sealed record Open(string Directory, long Pending) : Operation(Directory);

    private sealed class Segment(string path, SafeFileHandle handle, long length)
    {
        public string Path { get; } = path;
        public SafeFileHandle Handle { get; } = handle;
        public long Length { get; set; } = length;
    }

    private IReadOnlyList<GroupCommitQueue<Operation, IReadOnlyList<LoggedUpdate>>.Outcome> Commit(IReadOnlyList<Operation> batch)
    {
        _touched.Clear();
        _changedDirectories.Clear();
        var outcomes = new GroupCommitQueue<Operation, IReadOnlyList<LoggedUpdate>>.Outcome[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            try
            {
                outcomes[i] = GroupCommitQueue<Operation, IReadOnlyList<LoggedUpdate>>.Outcome.Success(batch[i] switch
                {
                    Append a => AppendRecord(a),
                    Drop d => DropSegments(d),
                    Open o => OpenSegment(o),
                    _ => throw new InvalidOperationException($"unknown operation {batch[i]}"),
                });
            }
            catch (Exception e)
            {
                outcomes[i] = GroupCommitQueue<Operation, IReadOnlyList<LoggedUpdate>>.Outcome.Failure(e);
            }
        }
        if (!_flushToDisk) return outcomes;
        foreach (var segment in _touched)
        {
            try
            {
                RandomAccess.FlushToDisk(segment.Handle);
            }
            catch
            {
                // What reached the disk is unknown: no append goes after it until the model reopens (and checks) the file.
                foreach (var touched in _touched) MarkUnusable(touched);
                throw;
            }
        }
        // A new file (or model directory) is durable only once its directory entry is.
        foreach (var directory in _changedDirectories) AtomicFile.SyncDirectory(directory);
        return outcomes;
    }

    private IReadOnlyList<LoggedUpdate> AppendRecord(Append append)
    {
        var path = SegmentPath(append.Directory, append.Segment);
        if (_unusable.Contains(path))
            throw new IOException($"Update log segment {path} failed to reach the disk earlier; it takes appends again once its model reopens it");
        var segment = OpenForAppend(path);
        var start = segment.Length;
        try
        {
            RandomAccess.Write(segment.Handle, [append.Head, append.Envelope], start);
            segment.Length = start + append.Head.Length + append.Envelope.Length;
        }
        catch
        {
            // A partial record would hide every record appended after it: cut it off (or give up on the file).
            try
            {
                RandomAccess.SetLength(segment.Handle, start);
            }
            catch
            {
                MarkUnusable(segment);
            }
            throw;
        }
        _touched.Add(segment);
        return [];
    }

    private Segment OpenForAppend(string path)
    {
        if (_open.TryGetValue(path, out var segment)) return segment;
        var directory = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(directory))
        {
            Directory.CreateDirectory(directory);
            _changedDirectories.Add(_root);
        }
        if (!File.Exists(path)) _changedDirectories.Add(directory);
        var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        segment = new Segment(path, handle, RandomAccess.GetLength(handle));
        _open[path] = segment;
        return segment;
    }

    private IReadOnlyList<LoggedUpdate> DropSegments(Drop drop)
    {
        foreach (var (path, number) in Segments(drop.Directory))
        {
            if (number > drop.Through) continue;
            Close(path);
            File.Delete(path);
        }
        return [];
    }

    private IReadOnlyList<LoggedUpdate> OpenSegment(Open open)
    {
        _unusable.RemoveWhere(path => Path.GetDirectoryName(path) == open.Directory);
        foreach (var (path, number) in Segments(open.Directory))
        {
            Close(path);
            if (number == open.Pending) continue;
            File.Delete(path);
            if (number > open.Pending)
                _logger.LogInformation("Update log {Directory}: dropped segment {Segment}, appended during a commit that did not complete", open.Directory, number);
        }
        var pendingPath = SegmentPath(open.Directory, open.Pending);
        return File.Exists(pendingPath) ? ReadSegment(pendingPath) : [];
    }

    /// <summary>Reads a segment's records, each update once; cuts off a torn or damaged tail.</summary>
    private List<LoggedUpdate> ReadSegment(string path)
    {
        var updates = new List<LoggedUpdate>();
        var seen = new HashSet<(string, string)>();
        long valid = 0;
        string? problem = null;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
        {
            var header = new byte[UpdateLogRecord.HeaderBytes];
            while (true)
            {
                var read = file.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
                if (read == 0) break;
                if (read < header.Length)
                {
                    problem = "a torn record header";
                    break;
                }
                if (!UpdateLogRecord.TryReadHeader(header, _maxEnvelopeBytes, out var metadataLength, out var envelopeLength, out var hash)
                    || valid + header.Length + metadataLength + envelopeLength > file.Length)
                {
                    problem = "a torn or damaged record";
                    break;
                }
                var metadata = new byte[metadataLength];
                var envelope = new byte[envelopeLength];
                file.ReadExactly(metadata);
                file.ReadExactly(envelope);
                if (UpdateLogRecord.TryDecode(metadata, envelope, hash) is not { } update)
                {
                    problem = "a record whose hash does not match";
                    break;
                }
                valid = file.Position;
                if (seen.Add((update.Update.DeviceId, update.Update.UpdateId))) updates.Add(update);
            }
        }
        if (problem is not null)
        {
            // Only the last append can be torn by a crash, and it was never acknowledged: its device sends it again.
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
            var cut = RandomAccess.GetLength(handle) - valid;
            RandomAccess.SetLength(handle, valid);
            RandomAccess.FlushToDisk(handle);
            _logger.LogWarning("Update log {Path}: cut off {Bytes} byte(s) after {Count} record(s) at {Problem}", path, cut, updates.Count, problem);
        }
        return updates;
    }

    private static IEnumerable<(string Path, long Segment)> Segments(string directory)
    {
        if (!Directory.Exists(directory)) yield break;
        foreach (var path in Directory.GetFiles(directory, "*" + Extension))
            if (long.TryParse(Path.GetFileNameWithoutExtension(path), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number))
                yield return (path, number);
    }

    private static string SegmentPath(string directory, long segment) =>
        Path.Combine(directory, segment.ToString("D19", System.Globalization.CultureInfo.InvariantCulture) + Extension);

    private void MarkUnusable(Segment segment)
    {
        _unusable.Add(segment.Path);
        Close(segment.Path);
    }

    private void Close(string path)
    {
        if (_open.Remove(path, out var segment)) segment.Handle.Dispose();
    }

    /// <summary>Writes what is queued, then closes the files.</summary>
    public void Dispose()
    {
        _queue.Dispose();
        foreach (var segment in _open.Values) segment.Handle.Dispose();
        _open.Clear();
    }
}
