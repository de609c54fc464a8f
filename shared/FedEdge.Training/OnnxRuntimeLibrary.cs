using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Training;

/// <summary>
/// Which native ONNX Runtime library the process loads. By default the one the NuGet package put next to the
/// application; on a Jetson (linux-arm64 with CUDA, which no package ships) the agent is pointed at an ONNX Runtime
/// built for JetPack instead, with <c>FEDEDGE_ONNXRUNTIME_LIBRARY=/path/libonnxruntime.so</c> (applied by
/// <see cref="UseFromEnvironment"/>) or <see cref="Use"/>, before the first session (deploy/jetson.md).
/// </summary>
public static class OnnxRuntimeLibrary
{
    /// <summary>Environment variable naming the native library to load instead of the packaged one.</summary>
    public const string EnvironmentVariable = "FEDEDGE_ONNXRUNTIME_LIBRARY";

    private static readonly Lock Gate = new();
    private static string? _path;

    /// <summary>The configured library, or null for the packaged one.</summary>
    public static string? ConfiguredPath
    {
        get
        {
            lock (Gate)
            {
                return _path;
            }
        }
    }

    /// <summary>
    /// Loads ONNX Runtime from <paramref name="path"/> instead of the packaged library. Must run before the first
    /// ONNX Runtime call of the process; calling it again with the same path does nothing.
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidOperationException">Another library was configured already.</exception>
    public static void Use(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            throw new FileNotFoundException($"ONNX Runtime library '{full}' ({EnvironmentVariable} or the configured path) does not exist.", full);
        }

        lock (Gate)
        {
            if (_path is not null)
            {
                if (_path == full)
                {
                    return;
                }

                throw new InvalidOperationException($"ONNX Runtime is already configured to load from '{_path}'; it cannot switch to '{full}'.");
            }

            _path = full;
            NativeLibrary.SetDllImportResolver(typeof(OrtEnv).Assembly, Resolve);
        }
    }

    /// <summary>The native ONNX Runtime file this process has mapped (Linux: from /proc/self/maps), or null when none is loaded yet.</summary>
    public static string? LoadedFrom()
    {
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps))
        {
            return null;
        }

        return File.ReadLines(maps).Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 6)
            .Select(fields => string.Join(' ', fields.Skip(5)))
            .FirstOrDefault(file => Path.GetFileName(file).StartsWith("libonnxruntime.so", StringComparison.Ordinal));
    }

    /// <summary>
    /// Applies <see cref="EnvironmentVariable"/> when it is set: the application's first step (the CLI's, which also
    /// hosts the edge agent), before any ONNX Runtime object exists.
    /// </summary>
    /// <exception cref="FileNotFoundException">The variable names no file.</exception>
    public static void UseFromEnvironment()
    {
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } path)
        {
            Use(path);
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != "onnxruntime" || ConfiguredPath is not { } path)
        {
            return IntPtr.Zero; // the default search
        }

        try
        {
            return NativeLibrary.Load(path);
        }
        catch (DllNotFoundException e)
        {
            throw new DllNotFoundException($"ONNX Runtime library '{path}' ({EnvironmentVariable}) could not be loaded: {e.Message}", e);
        }
    }
}
