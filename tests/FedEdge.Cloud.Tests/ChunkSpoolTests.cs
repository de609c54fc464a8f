using FedEdge.Cloud.Ingestion;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Cloud.Tests;

public sealed class ChunkSpoolTests
{
    private const string Update = "00112233445566778899AABBCCDDEEFF";

    [Fact]
    public void ATornLastRecordIsCutOff_AndLaterChunksStayReadable()
    {
        using var data = new TempDirectory();
        var spool = new ChunkSpool(Path.Combine(data.Path, "chunk-spool"), flushToDisk: false, NullLogger.Instance);
        spool.Append("dev-1", Update, [1, 2, 3]);
        spool.Append("dev-1", Update, [4, 5]);
        // A crash mid-append: a length prefix promising 100 bytes, 2 of them written.
        using (var file = new FileStream(Path.Combine(data.Path, "chunk-spool", "dev-1", Update + ".spool"), FileMode.Append))
            file.Write([100, 0, 0, 0, 9, 9]);

        Assert.Equal([[1, 2, 3], [4, 5]], spool.Read("dev-1", Update));
        spool.Append("dev-1", Update, [6]);
        Assert.Equal([[1, 2, 3], [4, 5], [6]], spool.Read("dev-1", Update));
        Assert.Equal([("dev-1", Update, 3)], spool.ReadAll().Select(u => (u.DeviceId, u.UpdateId, u.Frames.Count)));

        spool.Delete("dev-1", Update);
        Assert.Empty(spool.Read("dev-1", Update));
        Assert.Empty(spool.ReadAll());
    }

    [Fact]
    public void FilesThatAreNotADevicesUpdateAreIgnored()
    {
        using var data = new TempDirectory();
        var root = Path.Combine(data.Path, "chunk-spool");
        Directory.CreateDirectory(Path.Combine(root, "dev-1"));
        Directory.CreateDirectory(Path.Combine(root, "bad name"));
        File.WriteAllBytes(Path.Combine(root, "dev-1", "not-an-id.spool"), [1, 0, 0, 0, 7]);
        File.WriteAllBytes(Path.Combine(root, "bad name", Update + ".spool"), [1, 0, 0, 0, 7]);
        Assert.Empty(new ChunkSpool(root, flushToDisk: false, NullLogger.Instance).ReadAll());
    }
}
