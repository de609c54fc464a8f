using System.Buffers.Binary;
using System.Collections.Concurrent;
using FedEdge.Cloud.Abstractions;
using FedEdge.Protocol;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// The chunks of incomplete updates the cloud holds, on disk, for an external broker: the broker acknowledged them to the
/// device already, so once the cloud acknowledges a chunk to the broker this copy is the only one. A chunk is appended
/// (and flushed) before it is acknowledged; the file goes when its update is settled for good or dropped (expired,
/// evicted). On start the files are read back into the reassembler, so a cloud stopped mid-update completes it when the
/// broker redelivers the chunks it had not acknowledged.
/// <para>One file per (device, update): <c>chunk-spool/{device}/{update id}.spool</c>, records of a 4-byte length and
/// the frame as received. A torn last record (a crash mid-append; that chunk was not acknowledged) is ignored.</para>
/// </summary>
public sealed class ChunkSpool(string directory, bool flushToDisk, ILogger logger)
{
    private readonly ConcurrentDictionary<string, Lock> _locks = new(StringComparer.Ordinal);

    public string Directory { get; } = directory;

    private string PathOf(string deviceId, string updateId) => Path.Combine(Directory, deviceId, updateId + ".spool");

    /// <summary>Appends one chunk frame of an incomplete update; returns once it is on disk.</summary>
    public void Append(string deviceId, string updateId, ReadOnlySpan<byte> frame)
    {
        var path = PathOf(deviceId, updateId);
        lock (_locks.GetOrAdd(path, _ => new Lock()))
        {
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.None);
            Span<byte> length = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(length, frame.Length);
            file.Write(length);
            file.Write(frame);
            file.Flush(flushToDisk);
        }
    }

    /// <summary>Deletes an update's chunks (settled, or dropped by the reassembler).</summary>
    public void Delete(string deviceId, string updateId)
    {
        var path = PathOf(deviceId, updateId);
        lock (_locks.GetOrAdd(path, _ => new Lock()))
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                logger.LogWarning(e, "Could not delete the spooled chunks of {Update} from {Device}", updateId, deviceId);
            }
        }
        _locks.TryRemove(path, out _);
    }

    /// <summary>The spooled chunk frames of one update, in the order they were appended.</summary>
    public IReadOnlyList<byte[]> Read(string deviceId, string updateId) => ReadFile(PathOf(deviceId, updateId));

    /// <summary>Every spooled update: (device, update id, its chunk frames).</summary>
    public IEnumerable<(string DeviceId, string UpdateId, IReadOnlyList<byte[]> Frames)> ReadAll()
    {
        if (!System.IO.Directory.Exists(Directory)) yield break;
        foreach (var deviceDirectory in System.IO.Directory.EnumerateDirectories(Directory))
        {
            var deviceId = Path.GetFileName(deviceDirectory);
            if (!Identifiers.IsValid(deviceId)) continue;
            foreach (var file in System.IO.Directory.EnumerateFiles(deviceDirectory, "*.spool"))
            {
                var updateId = Path.GetFileNameWithoutExtension(file);
                if (updateId.Length != 2 * UpdateEnvelopeVerifier.UpdateIdLength || !updateId.All(Uri.IsHexDigit)) continue;
                yield return (deviceId, updateId, ReadFile(file));
            }
        }
    }

    private List<byte[]> ReadFile(string path)
    {
        lock (_locks.GetOrAdd(path, _ => new Lock())) return ReadFileLocked(path);
    }

    private static List<byte[]> ReadFileLocked(string path)
    {
        var frames = new List<byte[]>();
        if (!File.Exists(path)) return frames;
        var bytes = File.ReadAllBytes(path);
        var offset = 0;
        while (offset + 4 <= bytes.Length)
        {
            var length = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset));
            if (length < 0 || offset + 4 + length > bytes.Length) break;
            frames.Add(bytes.AsSpan(offset + 4, length).ToArray());
            offset += 4 + length;
        }
        if (offset < bytes.Length)
        {
            // A torn tail (a crash mid-append: that chunk was never acknowledged) is cut off, so later appends stay readable.
            using var file = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.None);
            file.SetLength(offset);
        }
        return frames;
    }
}
