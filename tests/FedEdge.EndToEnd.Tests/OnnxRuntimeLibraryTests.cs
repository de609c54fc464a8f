using System.Diagnostics;
using FedEdge.Training;

namespace FedEdge.EndToEnd.Tests;

/// <summary>
/// The Jetson path (issue 16): the CLI and agent load ONNX Runtime from FEDEDGE_ONNXRUNTIME_LIBRARY instead of the
/// packaged library. Checked here with the packaged CPU library copied elsewhere: the child process must map the copy
/// (from its /proc/self/maps, printed by `fededge info`) and train with it.
/// </summary>
public sealed class OnnxRuntimeLibraryTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "fededge-ort-" + Guid.NewGuid().ToString("N"));

    public OnnxRuntimeLibraryTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void TheConfiguredLibraryIsLoadedInsteadOfThePackagedOne()
    {
        var cli = CliPath();
        var packaged = Path.Combine(Path.GetDirectoryName(cli)!, "runtimes", "linux-x64", "native", "libonnxruntime.so");
        Assert.True(File.Exists(packaged), $"the packaged library is not at {packaged}");
        var copy = Path.Combine(_dir, "libonnxruntime.so");
        File.Copy(packaged, copy);

        var (code, output) = Run(cli, copy, "info");
        Assert.True(code == 0, output);
        Assert.Contains($"from {copy};", output);

        (code, output) = Run(cli, copy, "bench", "train", "--model", "mlp", "--steps", "3", "--warmup", "1");
        Assert.True(code == 0, output);
        Assert.Contains("RESULT framework=fededge model=mlp", output);

        (code, output) = Run(cli, null, "info");
        Assert.True(code == 0, output);
        Assert.Contains($"from {packaged};", output);
    }

    [Fact]
    public void AMissingLibraryIsAnErrorNamingThePath()
    {
        var missing = Path.Combine(_dir, "nowhere", "libonnxruntime.so");
        var (code, output) = Run(CliPath(), missing, "info");
        Assert.Equal(2, code);
        Assert.Contains(missing, output);
        Assert.Contains(OnnxRuntimeLibrary.EnvironmentVariable, output);
    }

    private static (int Code, string Output) Run(string cli, string? library, params string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(cli);
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment.Remove(OnnxRuntimeLibrary.EnvironmentVariable);
        if (library is not null)
        {
            info.Environment[OnnxRuntimeLibrary.EnvironmentVariable] = library;
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }

    private static string CliPath()
    {
        // tests/FedEdge.EndToEnd.Tests/bin/<Configuration>/net10.0/ → cli/FedEdge.Cli/bin/<Configuration>/net10.0/fededge.dll
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var configuration = testBin.Parent!.Name;
        var root = testBin.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        var path = Path.Combine(root, "cli", "FedEdge.Cli", "bin", configuration, testBin.Name, "fededge.dll");
        Assert.True(File.Exists(path), $"the CLI is not built at {path}");
        return path;
    }
}
