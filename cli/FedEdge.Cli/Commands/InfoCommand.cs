using System.CommandLine;
using System.Runtime.InteropServices;
using FedEdge.Training;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Cli.Commands;

/// <summary>`fededge info`: what this build is and what the machine offers, for bug reports.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var command = new Command("info", "Print version, runtime, platform and ONNX Runtime information.");
        command.SetAction(_ =>
        {
            var version = typeof(InfoCommand).Assembly.GetName().Version;
            Console.WriteLine($"fededge {version}");
            Console.WriteLine($"runtime   {RuntimeInformation.FrameworkDescription}");
            Console.WriteLine($"platform  {RuntimeInformation.RuntimeIdentifier} ({Environment.ProcessorCount} cores)");
            try
            {
                // Loads the native library (the packaged one, or FEDEDGE_ONNXRUNTIME_LIBRARY's) and says which file it was.
                var ort = OrtEnv.Instance();
                Console.WriteLine($"onnxruntime {ort.GetVersionString()} from {OnnxRuntimeLibrary.LoadedFrom() ?? "(unknown)"}; providers {string.Join(", ", ort.GetAvailableProviders())}");
                return 0;
            }
            catch (DllNotFoundException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
        });
        return command;
    }
}
