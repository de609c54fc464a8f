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
