using System.CommandLine;
using FedEdge.Cli.Commands;

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
    CertsCommand.Create(),
    // [commands] one line per subcommand, added by the component that owns it
};

return await root.Parse(args).InvokeAsync();
