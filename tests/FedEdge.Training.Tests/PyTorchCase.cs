using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace FedEdge.Training.Tests;

/// <summary>
/// One reference run of PyTorch/make_case.py in a temporary directory (deleted at dispose). The spec is the
/// model name followed by <c>key=value</c> settings passed to the script as <c>--key value</c>.
/// </summary>
internal sealed class PyTorchCase : IDisposable
{
    public const string Python = "/usr/bin/python3";

    private static readonly Lazy<string?> MissingReason = new(FindMissingReason);

    public PyTorchCase(string spec)
    {
        // A missing oracle fails the case (naming the install step) rather than skipping it: a skipped parity test
        // would let CI go green without checking the engine against PyTorch.
        if (Unavailable is { } reason)
        {
            throw new InvalidOperationException("The PyTorch reference cannot run: " + reason);
        }
        var parts = spec.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Settings = new CaseSettings(parts.Skip(1).Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]));
        Directory.CreateDirectory(Root);
        var arguments = new List<string> { ScriptPath, "--model", parts[0], "--out", Root };
        foreach (var (key, value) in Settings.Values)
        {
            arguments.Add("--" + key);
            arguments.Add(value);
        }
        Run(arguments);
        using var json = JsonDocument.Parse(System.IO.File.ReadAllText(File("case.json")));
        Parameters = json.RootElement.GetProperty("parameters").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Buffers = json.RootElement.GetProperty("buffers").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Ops = json.RootElement.GetProperty("ops").EnumerateArray().Select(e => e.GetString()!).ToArray();
    }

    /// <summary>Why the PyTorch reference cannot run here (null when it can): no /usr/bin/python3 or no torch/onnx in it.</summary>
    public static string? Unavailable => MissingReason.Value;

    /// <summary>make_case.py: next to the test assembly if copied there, else in the source tree above it.</summary>
    public static string ScriptPath { get; } = FindScript();

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "fededge-torch-" + Guid.NewGuid().ToString("N"));

    public CaseSettings Settings { get; }

    /// <summary>Trained parameters (as named in the ONNX model).</summary>
    public string[] Parameters { get; }

    /// <summary>BatchNorm running statistics that are ONNX initializers.</summary>
    public string[] Buffers { get; }

    /// <summary>ONNX op types of the exported graph.</summary>
    public string[] Ops { get; }

    public string File(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>(name, folder) of every tensor PyTorch wrote a final value for: "final" parameters and "buffers".</summary>
    public IEnumerable<(string Name, string Folder)> ExpectedTensors() =>
        Parameters.Select(p => (p, "final")).Concat(Buffers.Select(b => (b, "buffers")));

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static void Run(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in arguments)
        {
            start.ArgumentList.Add(a);
        }
        // One thread: the reference is tiny, and the test machine's cores are shared with the engine's run.
        start.Environment["OMP_NUM_THREADS"] = "1";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"make_case.py failed ({process.ExitCode}):\n{stderr.Result}\n{stdout}");
        }
    }

    private static string FindScript()
    {
        const string relative = "PyTorch/make_case.py";
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (string candidate in new[] { Path.Combine(dir.FullName, relative), Path.Combine(dir.FullName, "tests/FedEdge.Training.Tests", relative) })
            {
                if (System.IO.File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }
        throw new FileNotFoundException($"tests/FedEdge.Training.Tests/{relative} not found above {AppContext.BaseDirectory}.");
    }

    private static string? FindMissingReason()
    {
        if (!System.IO.File.Exists(Python))
        {
            return $"{Python} is missing (scripts/install-deps.sh --test installs python3, python3-torch, python3-onnx)";
        }
        try
        {
            var start = new ProcessStartInfo(Python, ["-c", "import torch, onnx, numpy"])
            {
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            using var process = Process.Start(start)!;
            string error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0
                ? null
                : $"{Python} cannot import torch/onnx/numpy (scripts/install-deps.sh --test installs python3-torch, python3-onnx, python3-numpy): {error.Trim().Split('\n')[^1]}";
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return $"{Python} could not be started: {e.Message}";
        }
    }
}

/// <summary>The key=value settings of a case.</summary>
internal sealed class CaseSettings(Dictionary<string, string> values)
{
    public IReadOnlyDictionary<string, string> Values => values;

    public string? Get(string key) => values.GetValueOrDefault(key);

    public int Int(string key, int defaultValue) =>
        values.TryGetValue(key, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : defaultValue;

    public float Float(string key) =>
        values.TryGetValue(key, out var v) ? float.Parse(v, CultureInfo.InvariantCulture) : 0f;
}

/// <summary>
/// A theory checked against PyTorch. It never skips: where Debian's python3-torch is missing, every case fails with
/// the install step (see <see cref="PyTorchCase.Unavailable"/>).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PyTorchTheoryAttribute : TheoryAttribute;
