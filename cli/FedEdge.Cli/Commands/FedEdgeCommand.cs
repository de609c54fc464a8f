using System.CommandLine;

namespace FedEdge.Cli.Commands;

/// <summary>`fededge`: the root command and its subcommands (each in its own file under Commands/).</summary>
public static class FedEdgeCommand
{
    public static RootCommand Create() => new("FedEdge: federated learning for fleets of edge devices.")
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
}
