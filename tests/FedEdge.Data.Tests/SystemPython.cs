using System.Diagnostics;

namespace FedEdge.Data.Tests;

/// <summary>Runs Debian's /usr/bin/python3 (which has numpy; the python3 first on PATH may not).</summary>
internal static class SystemPython
{
    public const string Path = "/usr/bin/python3";

    /// <summary>Runs <paramref name="code"/> with the given arguments; fails the test with stderr on a non-zero exit.</summary>
    public static string Run(string code, params string[] arguments)
    {
        Assert.True(File.Exists(Path), $"{Path} is missing; run scripts/install-deps.sh --test (python3, python3-numpy).");
        var start = new ProcessStartInfo(Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(code);
        foreach (string a in arguments)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"python3 failed ({process.ExitCode}):\n{stderr.Result}");
        return stdout;
    }
}

/// <summary>A temporary directory deleted at dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "fededge-data-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
