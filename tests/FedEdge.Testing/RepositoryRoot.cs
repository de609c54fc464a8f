namespace FedEdge.Testing;

/// <summary>The source tree the tests run from: the first folder above the test binaries that holds FedEdge.sln.</summary>
public static class RepositoryRoot
{
    private static readonly Lazy<string> Root = new(() =>
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(directory.FullName, "FedEdge.sln"))) return directory.FullName;
        }
        throw new InvalidOperationException($"FedEdge.sln not found above {AppContext.BaseDirectory}");
    });

    public static string Path => Root.Value;

    /// <summary>A path inside the source tree.</summary>
    public static string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);
}
