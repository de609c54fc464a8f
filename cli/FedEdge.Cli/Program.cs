using FedEdge.Cli.Commands;
using FedEdge.Training;

// `fededge`: one tool for training, simulation, the cloud service, the edge agent and benchmarks.
try
{
    // Jetson: an ONNX Runtime built for JetPack instead of the packaged one (deploy/jetson.md), before any ONNX Runtime call.
    OnnxRuntimeLibrary.UseFromEnvironment();
}
catch (FileNotFoundException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

return await FedEdgeCommand.Create().Parse(args).InvokeAsync();
