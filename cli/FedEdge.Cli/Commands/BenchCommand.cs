using System.CommandLine;

namespace FedEdge.Cli.Commands;

/// <summary>`fededge bench ...`: the project's own benchmarks, one subcommand per area.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Run FedEdge's benchmarks and print their figures.")
        {
            BenchAggregateCommand.Create(),
            BenchTrainCommand.Create(),
            BenchCodecsCommand.Create(),
            BenchE2eCommand.Create(),
            BenchFarSignCommand.Create(),
            BenchFedMMCommand.Create(),
            // [bench] one line per benchmark subcommand
        };
        return command;
    }
}
