using System.Runtime;

namespace FedEdge.Cloud.Hosting;

/// <summary>
/// The .NET runtime settings the cloud is deployed with, and whether this process has them. Ingest is CPU-bound
/// (verify, decode, persist per update), and two process-wide settings decide much of its cost: server GC (per-core
/// allocation contexts and a larger gen-0 budget; with DATAS, .NET's default, the heap count still follows the load)
/// and full optimisation on the first JIT of a method (<c>TC_QuickJit=0</c>; ReadyToRun framework code still tiers
/// up). On the 2-core build machine the two together took the cloud from 1.7–2.3 to 0.85–1.45 ms of CPU per sign update
/// (bench/README.md, <c>fededge bench e2e</c>). They are process-wide, so they are set where the cloud is deployed
/// (deploy/docker, deploy/kubernetes: <see cref="EnvironmentVariables"/>), not by the <c>fededge</c> tool, whose edge
/// agent and trainer run on small boards with the defaults.
/// </summary>
public static class CloudRuntimeSettings
{
    /// <summary>The environment the cloud's deployments set.</summary>
    public static IReadOnlyList<(string Name, string Value)> EnvironmentVariables { get; } =
        [("DOTNET_gcServer", "1"), ("DOTNET_TC_QuickJit", "0")];

    /// <summary>Whether this process runs with server GC.</summary>
    public static bool ServerGc => GCSettings.IsServerGC;

    /// <summary>Whether the first JIT of a method is fully optimised in this process (quick JIT off, or tiering off).</summary>
    public static bool FullJitFirst =>
        IsOff("TC_QuickJit", "System.Runtime.TieredCompilation.QuickJit") || IsOff("TieredCompilation", "System.Runtime.TieredCompilation");

    /// <summary>Whether this process has the deployed settings.</summary>
    public static bool AsDeployed => ServerGc && FullJitFirst;

    /// <summary>One line for logs and benchmark headers, e.g. "server GC, full JIT on first call".</summary>
    public static string Describe() =>
        $"{(ServerGc ? "server" : "workstation")} GC, {(FullJitFirst ? "full JIT on first call" : "quick JIT (tiered)")}";

    /// <summary>How to run a command with the deployed settings, for messages.</summary>
    public static string Prefix => string.Join(' ', EnvironmentVariables.Select(v => $"{v.Name}={v.Value}"));

    private static bool IsOff(string knob, string runtimeConfigName)
    {
        var value = Environment.GetEnvironmentVariable("DOTNET_" + knob) ?? Environment.GetEnvironmentVariable("COMPlus_" + knob);
        if (value is not null) return value.Trim() == "0";
        return AppContext.GetData(runtimeConfigName) is { } data && string.Equals(data.ToString(), "false", StringComparison.OrdinalIgnoreCase);
    }
}
