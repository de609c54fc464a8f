using System.CommandLine;
using FedEdge.Data;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge data split`: writes devices' shares of a shared data set as their own .npy files, so that a demo device
/// runs `fededge edge --data npy:...` and loads only its own data, as a real device does (see DeviceShareFiles).
/// </summary>
internal static class DataCommand
{
    public static Command Create() => new("data", "Prepare data for devices.") { SplitCommand() };

    private static Command SplitCommand()
    {
        var data = new Option<string>("--data") { Description = "Shared data set: fashion-mnist | npy:X.npy,Y.npy[,Xt.npy,Yt.npy] | csv:train.csv[,test.csv]", Required = true };
        var partition = new Option<string>("--partition") { Description = "iid, dirichlet:0.5 or shards:2 (as the agent's Edge:Data:Partition).", DefaultValueFactory = _ => "iid" };
        var devices = new Option<int>("--devices") { Description = "Number of devices the set is split among.", Required = true };
        var index = new Option<int?>("--index") { Description = "Write only this device's share (default: every device's, in OUT/<index>/)." };
        var seed = new Option<int>("--seed") { Description = "Partition seed (as Edge:Data:PartitionSeed).", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "Directory to write train.x.npy, train.y.npy, test.x.npy, test.y.npy into.", Required = true };
        var command = new Command("split", "Write devices' shares of a data set as their own .npy files (for `fededge edge --data npy:...`).")
        {
            data, partition, devices, index, seed, output,
        };
        command.SetAction(parse => TrainCommand.Guarded(() =>
        {
            var loaded = DatasetSource.Load(parse.GetValue(data)!);
            int count = parse.GetValue(devices);
            var directory = parse.GetValue(output)!;
            if (parse.GetValue(index) is int one)
            {
                Console.WriteLine(DeviceShareFiles.Write(loaded, parse.GetValue(partition)!, count, one, parse.GetValue(seed), directory));
                return 0;
            }
            for (int i = 0; i < count; i++)
                Console.WriteLine(DeviceShareFiles.Write(loaded, parse.GetValue(partition)!, count, i, parse.GetValue(seed), Path.Combine(directory, i.ToString(System.Globalization.CultureInfo.InvariantCulture))));
            return 0;
        }));
        return command;
    }
}
