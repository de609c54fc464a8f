using System.Diagnostics;

namespace FedEdge.Testing;

/// <summary>
/// The built `fededge` CLI run as a child process (`dotnet fededge.dll …`), for tests that need a real process to kill
/// or restart. The test project must build the CLI first (a ProjectReference to cli/FedEdge.Cli with
/// ReferenceOutputAssembly="false").
/// </summary>
public static class FedEdgeCli
{
    /// <summary>cli/FedEdge.Cli/bin/&lt;Configuration&gt;/&lt;framework&gt;/fededge.dll, for the configuration the tests were built in.</summary>
    public static string DllPath
    {
        get
        {
            // tests/<project>/bin/<Configuration>/<framework>/
            var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
            var path = RepositoryRoot.Combine("cli", "FedEdge.Cli", "bin", testBin.Parent!.Name, testBin.Name, "fededge.dll");
            Assert.True(File.Exists(path), $"the CLI is not built at {path} (dotnet build FedEdge.sln builds it)");
            return path;
        }
    }

    /// <summary>Starts `fededge <paramref name="arguments"/>` with the given environment variables added.</summary>
    public static ServerProcess Start(IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("dotnet");
        info.ArgumentList.Add(DllPath);
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        return ServerProcess.Start(info, "fededge " + string.Join(' ', arguments.Take(1)));
    }
}
