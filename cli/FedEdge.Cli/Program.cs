using System.CommandLine;
using FedEdge.Cli.Commands;
using FedEdge.Training;

// `fededge`: one tool for training, simulation, the cloud service, the edge agent and benchmarks.
// Each subcommand lives in its own file under Commands/.
var root = new RootCommand("FedEdge: federated learning for fleets of edge devices.")
{
    InfoCommand.Create(),
    BenchCommand.Create(),
    CloudCommand.Create(),
    DevicesCommand.Create(),
    AggregateCommand.Create(),
    TrainCommand.Create(),
    EvalCommand.Create(),
    EdgeCommand.Create(),
    SimCommand.Create(),
    DataCommand.Create(),
    // [commands] one line per subcommand, added by the component that owns it
};

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

return await root.Parse(args).InvokeAsync();
