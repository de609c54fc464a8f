using FedEdge.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Edge.Outbox;

/// <summary>
/// Durable, bounded FIFO of updates waiting for the broker's acknowledgement.
/// <para>
/// Each item is one file, written atomically (<see cref="AtomicFile"/>), named by its sequence number, and
/// carries a SHA-256 of its content. An item leaves the outbox only through <see cref="RemoveAsync"/>, which the
/// sender calls after the broker's PUBACK; a crash at any point leaves every accepted item on disk, so delivery
/// is at-least-once and the cloud de-duplicates by update id. When the bounds are reached new items are refused
/// (<see cref="OutboxFullException"/>) rather than dropping old ones. Files that fail their checksum are moved to
/// <c>quarantine/</c> with a log line and skipped.
/// </para>
/// Thread-safe: any number of producers, one consumer (peek, send, remove).
/// </summary>
public sealed partial class UpdateOutbox : IDisposable
{
    public const string QuarantineDirectoryName = "quarantine";
    public const string RejectedDirectoryName = "rejected";

    private readonly OutboxOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _clock;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly SortedDictionary<long, long> _fileBytesBySequence = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _bytes;
    private long _nextSequence;

    /// <summary>Test seam: wraps the stream an item is written to (to inject write failures such as a full disk).</summary>
    internal Func<Stream, Stream>? WrapWriteStream { get; set; }

    /// <summary>Opens (or creates) the outbox in <see cref="OutboxOptions.Directory"/> and indexes what is there.</summary>
    public UpdateOutbox(OutboxOptions options, ILogger<UpdateOutbox>? logger = null, TimeProvider? clock = null)
    {
        options.Validate();
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _clock = clock ?? TimeProvider.System;
        Directory.CreateDirectory(options.Directory);
        var leftovers = AtomicFile.DeleteLeftovers(options.Directory);
        if (leftovers > 0)
            LogLeftoversDeleted(leftovers, options.Directory);
        foreach (var path in Directory.EnumerateFiles(options.Directory, "*" + OutboxItemFormat.Extension))
        {
            if (!OutboxItemFormat.TryParseFileName(Path.GetFileName(path), out var sequence))
            {
                Quarantine(path, "file name is not a sequence number");
                continue;
            }
            var size = new FileInfo(path).Length;
            _fileBytesBySequence[sequence] = size;
            _bytes += size;
        }
        _nextSequence = _fileBytesBySequence.Count == 0 ? 1 : _fileBytesBySequence.Keys.Max() + 1;
        if (_fileBytesBySequence.Count > 0)
            LogReopened(_fileBytesBySequence.Count, _bytes, options.Directory);
    }

    /// <summary>Number of pending items.</summary>
    public int Count
    {
        get
        {
            lock (_fileBytesBySequence)
                return _fileBytesBySequence.Count;
        }
    }

    /// <summary>Bytes on disk of the pending items.</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Sequence numbers of the pending items, oldest first.</summary>
    public IReadOnlyList<long> PendingSequences
    {
        get
        {
            lock (_fileBytesBySequence)
                return [.. _fileBytesBySequence.Keys];
        }
    }

    /// <summary>
    /// Accepts an update: returns only once it is durably on disk. Throws <see cref="OutboxFullException"/>
    /// when a bound would be exceeded and <see cref="IOException"/> when the write fails (for example a full
    /// disk); in both cases nothing already in the outbox is changed.
    /// </summary>
    public async Task<OutboxItem> EnqueueAsync(string updateId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(updateId);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var sequence = _nextSequence;
            var enqueuedAt = _clock.GetUtcNow();
            var file = OutboxItemFormat.Encode(sequence, updateId, enqueuedAt, payload.Span);
            int count;
            lock (_fileBytesBySequence)
                count = _fileBytesBySequence.Count;
            if (count + 1 > _options.MaxItems || _bytes + file.Length > _options.MaxBytes)
            {
                LogRefused(updateId, file.Length, count, _bytes, _options.MaxItems, _options.MaxBytes);
                throw new OutboxFullException(
                    $"Outbox '{_options.Directory}' is full: refusing update {updateId} ({file.Length} bytes); " +
                    $"it holds {count}/{_options.MaxItems} items and {_bytes}/{_options.MaxBytes} bytes.");
            }
            var path = Path.Combine(_options.Directory, OutboxItemFormat.FileName(sequence));
            try
            {
                AtomicFile.Write(path, s => s.Write(file), _options.Fsync, WrapWriteStream);
            }
            catch (IOException e)
            {
                LogWriteFailed(e, updateId, path);
                throw;
            }
            _nextSequence = sequence + 1;
            lock (_fileBytesBySequence)
                _fileBytesBySequence[sequence] = file.Length;
            Interlocked.Add(ref _bytes, file.Length);
            SignalChanged();
            return new OutboxItem(sequence, updateId, enqueuedAt, payload.ToArray()) { FileBytes = file.Length };
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The oldest pending item that passes its checksum, or null when the outbox is empty. Corrupt items met on
    /// the way are quarantined. The item stays in the outbox until <see cref="RemoveAsync"/>.
    /// </summary>
    public async Task<OutboxItem?> PeekAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            while (true)
            {
                long sequence;
                lock (_fileBytesBySequence)
                {
                    if (_fileBytesBySequence.Count == 0)
                        return null;
                    sequence = _fileBytesBySequence.Keys.First();
                }
                var path = Path.Combine(_options.Directory, OutboxItemFormat.FileName(sequence));
                byte[] bytes;
                try
                {
                    bytes = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
                }
                catch (FileNotFoundException)
                {
                    LogVanished(path);
                    Forget(sequence);
                    continue;
                }
                if (OutboxItemFormat.TryDecode(bytes, sequence, out var item, out var reason))
                    return item;
                Quarantine(path, reason);
                Forget(sequence);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Removes an item after the broker acknowledged it. Removing an item twice is harmless.</summary>
    public async Task RemoveAsync(OutboxItem item, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_fileBytesBySequence)
            {
                if (!_fileBytesBySequence.ContainsKey(item.Sequence))
                    return;
            }
            File.Delete(Path.Combine(_options.Directory, OutboxItemFormat.FileName(item.Sequence)));
            if (_options.Fsync)
                AtomicFile.SyncDirectory(_options.Directory);
            Forget(item.Sequence);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Moves an item the broker refused for good (for example NotAuthorized) to <c>rejected/</c>, so that it
    /// does not block the items behind it; the file is kept for the operator.
    /// </summary>
    public async Task RejectAsync(OutboxItem item, string reason, CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            lock (_fileBytesBySequence)
            {
                if (!_fileBytesBySequence.ContainsKey(item.Sequence))
                    return;
            }
            var path = Path.Combine(_options.Directory, OutboxItemFormat.FileName(item.Sequence));
            var rejected = Path.Combine(_options.Directory, RejectedDirectoryName);
            Directory.CreateDirectory(rejected);
            File.Move(path, Path.Combine(rejected, $"{Path.GetFileName(path)}.{_clock.GetUtcNow().ToUnixTimeMilliseconds()}"));
            if (_options.Fsync)
                AtomicFile.SyncDirectory(_options.Directory);
            Forget(item.Sequence);
            LogRejected(item.UpdateId, reason);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Completes when the outbox holds at least one item.</summary>
    public async Task WaitForItemsAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task changed;
            lock (_fileBytesBySequence)
            {
                if (_fileBytesBySequence.Count > 0)
                    return;
                changed = _changed.Task;
            }
            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Dispose() => _gate.Dispose();

    private void Forget(long sequence)
    {
        lock (_fileBytesBySequence)
        {
            if (_fileBytesBySequence.Remove(sequence, out var size))
                Interlocked.Add(ref _bytes, -size);
        }
    }

    private void SignalChanged()
    {
        TaskCompletionSource previous;
        lock (_fileBytesBySequence)
        {
            previous = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        previous.TrySetResult();
    }

    private void Quarantine(string path, string reason)
    {
        var quarantine = Path.Combine(_options.Directory, QuarantineDirectoryName);
        Directory.CreateDirectory(quarantine);
        var target = Path.Combine(quarantine, $"{Path.GetFileName(path)}.{_clock.GetUtcNow().ToUnixTimeMilliseconds()}.{Guid.NewGuid():N}");
        try
        {
            File.Move(path, target);
            LogQuarantined(path, reason, target);
        }
        catch (IOException e)
        {
            LogQuarantineFailed(e, path, reason);
        }
    }

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Outbox {Directory} reopened with {Count} pending updates ({Bytes} bytes)")]
    private partial void LogReopened(int count, long bytes, string directory);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "Deleted {Count} incomplete temporary files in outbox {Directory}")]
    private partial void LogLeftoversDeleted(int count, string directory);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "Outbox full: refused update {UpdateId} ({ItemBytes} bytes); holding {Count}/{MaxItems} items, {Bytes}/{MaxBytes} bytes")]
    private partial void LogRefused(string updateId, long itemBytes, int count, long bytes, int maxItems, long maxBytes);

    [LoggerMessage(EventId = 103, Level = LogLevel.Error, Message = "Outbox could not write update {UpdateId} to {Path}; existing items are unaffected")]
    private partial void LogWriteFailed(Exception exception, string updateId, string path);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "Quarantined outbox file {Path} ({Reason}) as {QuarantinePath}")]
    private partial void LogQuarantined(string path, string reason, string quarantinePath);

    [LoggerMessage(EventId = 105, Level = LogLevel.Error, Message = "Could not quarantine corrupt outbox file {Path} ({Reason})")]
    private partial void LogQuarantineFailed(Exception exception, string path, string reason);

    [LoggerMessage(EventId = 107, Level = LogLevel.Error, Message = "Update {UpdateId} was refused for good and moved to the rejected folder: {Reason}")]
    private partial void LogRejected(string updateId, string reason);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "Outbox file {Path} vanished; forgetting it")]
    private partial void LogVanished(string path);
}
