using System.CommandLine;
using System.Runtime.InteropServices;

namespace FedEdge.Cli.Commands;

/// <summary>`fededge info`: what this build is and what the machine offers, for bug reports.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "Print version, runtime and platform information.");
        command.SetAction(_ =>
        {
            var version = typeof(InfoCommand).Assembly.GetName().Version;
            Console.WriteLine($"fededge {version}");
            Console.WriteLine($"runtime   {RuntimeInformation.FrameworkDescription}");
            Console.WriteLine($"platform  {RuntimeInformation.RuntimeIdentifier} ({Environment.ProcessorCount} cores)");
            return 0;
        });
        return command;
    }
}
