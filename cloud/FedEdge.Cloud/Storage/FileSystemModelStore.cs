using System.Security.Cryptography;
using FedEdge.Storage;

namespace FedEdge.Cloud.Storage;

/// <summary>
/// Model blobs on the file system, content-addressed by SHA-256 (<c>models/ab/abcdef…</c>). Writes go through
/// <see cref="AtomicFile"/> (temporary file flushed to disk, renamed into place, directory flushed), so a crash never
/// leaves a partial blob under a valid name and a version's blob survives a power loss once its state names it;
/// reads verify the hash, so a damaged file is reported rather than published.
/// </summary>
public sealed class FileSystemModelStore
{
    private readonly string _root;

    public FileSystemModelStore(string root)
    {
        _root = Path.GetFullPath(root);
        Directory.CreateDirectory(_root);
    }

    /// <summary>Stores <paramref name="blob"/> and returns its lower-case hex SHA-256 (idempotent).</summary>
    public Task<string> PutAsync(ReadOnlyMemory<byte> blob, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var sha = Convert.ToHexStringLower(SHA256.HashData(blob.Span));
        var path = PathOf(sha);
        if (File.Exists(path)) return Task.FromResult(sha);
        var directory = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(directory))
        {
            Directory.CreateDirectory(directory);
            AtomicFile.SyncDirectory(_root);
        }
        // Content-addressed: a concurrent writer of the same name writes the same bytes, so replacing it is harmless.
        AtomicFile.Write(path, stream => stream.Write(blob.Span));
        return Task.FromResult(sha);
    }

    /// <summary>Reads a blob and checks it against its name; throws <see cref="InvalidDataException"/> when it was damaged.</summary>
    public async Task<byte[]?> GetAsync(string sha256, CancellationToken cancellationToken = default)
    {
        var path = PathOf(sha256);
        if (!File.Exists(path)) return null;
        var blob = await File.ReadAllBytesAsync(path, cancellationToken);
        var actual = Convert.ToHexStringLower(SHA256.HashData(blob));
        if (actual != sha256) throw new InvalidDataException($"Model blob {sha256} is damaged on disk (its SHA-256 is {actual})");
        return blob;
    }

    public bool Contains(string sha256) => File.Exists(PathOf(sha256));

    private string PathOf(string sha256)
    {
        if (sha256.Length != 64 || !sha256.All(char.IsAsciiHexDigitLower))
            throw new ArgumentException($"'{sha256}' is not a lower-case hex SHA-256", nameof(sha256));
        return Path.Combine(_root, sha256[..2], sha256);
    }
}
