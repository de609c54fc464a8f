using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FedEdge.Aggregation.SignedDirections;
using FedEdge.Cli.Simulation;
using FedEdge.Data;
using FedEdge.Protocol;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge bench far-sign`: FAR-SIGN (algorithms.md §4) against robust FedBuff (trimmed mean) on one simulated fleet of
/// Fashion-MNIST devices with lognormal speeds and a share of attackers, in simulated time (see
/// <see cref="FarSignBenchmark"/>): test accuracy against simulated seconds and bytes up, a table and JSON records.
/// </summary>
internal static class BenchFarSignCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "logreg | mlp", DefaultValueFactory = _ => "logreg" };
        model.AcceptOnlyFromAmong("logreg", "mlp");
        var methods = new Option<string>("--method") { Description = "Comma-separated: far-sign, fedbuff.", DefaultValueFactory = _ => "far-sign,fedbuff" };
        var attacks = new Option<string>("--attack") { Description = "Comma-separated: none, sign-flip, random, colluding (or 'all').", DefaultValueFactory = _ => "none" };
        var order = new Option<string?>("--order") { Description = "FAR-SIGN: first | zeroth (default from --far-sign, else first)." };
        order.AcceptOnlyFromAmong("first", "zeroth");
        var directions = new Option<int?>("--directions") { Description = "FAR-SIGN: directions K per message." };
        var farSign = new Option<string>("--far-sign") { Description = "FAR-SIGN parameters as in the algorithm spec, e.g. alpha=20,k0=10000,beta=1.", DefaultValueFactory = _ => "" };
        var devices = new Option<int>("--devices") { Description = "Devices n.", DefaultValueFactory = _ => 20 };
        var attackers = new Option<double>("--attackers") { Description = "Share of attackers when an attack runs.", DefaultValueFactory = _ => 0.2 };
        var budget = new Option<double?>("--budget") { Description = "Simulated seconds per run (default: logreg 30, mlp 60)." };
        var checkpoints = new Option<int>("--checkpoints") { Description = "Test evaluations per run.", DefaultValueFactory = _ => 30 };
        var evalSamples = new Option<int>("--eval-samples") { Description = "Test samples per evaluation (0: all 10,000).", DefaultValueFactory = _ => 0 };
        var partition = new Option<string>("--partition") { Description = "iid | dirichlet:ALPHA | shards:K", DefaultValueFactory = _ => "iid" };
        var sigma = new Option<double>("--speed-sigma") { Description = "σ of the lognormal compute slowdown.", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var buffer = new Option<int>("--buffer") { Description = "FedBuff: updates per version K.", DefaultValueFactory = _ => 10 };
        var localSteps = new Option<int>("--local-steps") { Description = "FedBuff: local SGD steps per update.", DefaultValueFactory = _ => 10 };
        var lr = new Option<double>("--lr") { Description = "FedBuff: local SGD learning rate.", DefaultValueFactory = _ => 0.05 };
        var batch = new Option<int>("--batch") { Description = "FedBuff: local minibatch.", DefaultValueFactory = _ => 64 };
        var rule = new Option<string>("--rule") { Description = "FedBuff: the rule over the buffer.", DefaultValueFactory = _ => "trimmed-mean" };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST directory (default: Debian's dataset-fashion-mnist)." };
        var json = new Option<FileInfo?>("--json") { Description = "Append one JSON record per run to this file." };
        var quiet = new Option<bool>("--quiet") { Description = "Only the summary table." };
        var command = new Command("far-sign", "FAR-SIGN against robust FedBuff on a simulated heterogeneous fleet, in simulated time.")
        {
            model, methods, attacks, order, directions, farSign, devices, attackers, budget, checkpoints, evalSamples, partition, sigma, seed,
            buffer, localSteps, lr, batch, rule, data, json, quiet,
        };
        command.SetAction(parse => TrainCommand.Guarded(() =>
        {
            var parameters = new Dictionary<string, string>(AlgorithmSpec.Parse("far-sign:" + parse.GetValue(farSign)).Parameters, StringComparer.Ordinal);
            if (parse.GetValue(order) is { } o) parameters["order"] = o;
            if (parse.GetValue(directions) is { } k) parameters["directions"] = k.ToString(CultureInfo.InvariantCulture);
            var farSignOptions = FarSignOptions.FromParameters(parameters);
            var modelName = parse.GetValue(model)!;
            var attackList = Split(parse.GetValue(attacks)!);
            if (attackList is ["all"]) attackList = [.. FarSignBenchmarkOptions.Attacks];
            var baseOptions = new FarSignBenchmarkOptions
            {
                Model = modelName,
                Devices = parse.GetValue(devices),
                AttackerFraction = parse.GetValue(attackers),
                Budget = parse.GetValue(budget) ?? (modelName == "mlp" ? 60 : 30),
                Checkpoints = parse.GetValue(checkpoints),
                EvaluationSamples = parse.GetValue(evalSamples),
                Partition = parse.GetValue(partition)!,
                SpeedSigma = parse.GetValue(sigma),
                Seed = parse.GetValue(seed),
                DataDirectory = parse.GetValue(data),
                FarSign = farSignOptions,
                BufferSize = parse.GetValue(buffer),
                LocalSteps = parse.GetValue(localSteps),
                LearningRate = parse.GetValue(lr),
                Batch = parse.GetValue(batch),
                Rule = parse.GetValue(rule)!,
            };
            var runs = Split(parse.GetValue(methods)!).SelectMany(m => attackList.Select(a => baseOptions with { Method = m, Attack = a })).ToArray();
            foreach (var r in runs) r.Validate();

            var train = FashionMnist.LoadTrain(baseOptions.DataDirectory, FeatureStorage.Byte);
            var test = FashionMnist.LoadTest(baseOptions.DataDirectory, FeatureStorage.Byte);
            var cost = baseOptions.Cost;
            Console.WriteLine($"fededge bench far-sign: {modelName}, {baseOptions.Devices} devices ({baseOptions.Partition}), lognormal σ = {baseOptions.SpeedSigma}, " +
                $"budget {baseOptions.Budget} simulated s; device {cost.Flops / 1e9:G3} GFLOP/s × slowdown, up {cost.UplinkBitsPerSecond / 1e6:G3} Mbit/s, " +
                $"down {cost.DownlinkBitsPerSecond / 1e6:G3} Mbit/s, latency {cost.LatencySeconds * 1000:G3} ms, {cost.OverheadBytes} B per message");
            Console.WriteLine($"far-sign spec: {farSignOptions.ToSpec()}");
            var results = new List<BenchmarkRun>();
            foreach (var options in runs)
            {
                using var bench = new FarSignBenchmark(options, train, test);
                if (results.Count == 0)
                {
                    Console.WriteLine($"d = {bench.Parameters:N0}; slowdowns {string.Join(" ", bench.Slowdowns.Select(s => s.ToString("F2", CultureInfo.InvariantCulture)))}");
                }

                Console.WriteLine($"-- {options.Method}, attack {options.Attack} ({options.AttackerCount} attackers: {string.Join(" ", bench.Malicious.Select((m, i) => m ? FarSignBenchmark.DeviceId(i) : null).OfType<string>())})");
                var run = bench.Run(parse.GetValue(quiet) ? null : p => Console.WriteLine(
                    $"   t = {p.Time,7:F1} s  v{p.Version,-7} msgs {p.Messages,-8} up {p.BytesUp / 1e6,8:F2} MB  accuracy {BenchmarkFormat.Percent(p.Accuracy)} %  loss {p.Loss:F4}"));
                Console.WriteLine($"   {run.Strategy}: final {BenchmarkFormat.Percent(run.FinalAccuracy)} %, best {BenchmarkFormat.Percent(run.BestAccuracy)} %, {run.Messages} messages, {run.Versions} versions, " +
                    $"{run.Refused} refused, {run.WallSeconds:F1} s wall");
                results.Add(run);
                if (parse.GetValue(json) is { } file)
                {
                    File.AppendAllText(file.FullName, JsonSerializer.Serialize(new
                    {
                        run.Method,
                        run.Model,
                        run.Attack,
                        run.Attackers,
                        run.Strategy,
                        run.Parameters,
                        farSign = options.Method == "far-sign" ? farSignOptions.ToSpec() : null,
                        fedBuff = options.Method == "fedbuff" ? new { options.BufferSize, options.LocalSteps, options.LearningRate, options.Batch, options.Rule } : null,
                        options.Devices,
                        options.Partition,
                        options.SpeedSigma,
                        options.Seed,
                        options.Budget,
                        cost,
                        run.FinalAccuracy,
                        run.BestAccuracy,
                        timeTo70 = run.TimeTo(0.70),
                        timeTo75 = run.TimeTo(0.75),
                        timeTo80 = run.TimeTo(0.80),
                        run.Messages,
                        run.Versions,
                        run.BytesUp,
                        run.BytesDown,
                        run.Refused,
                        run.WallSeconds,
                        run.Points,
                    }) + Environment.NewLine);
                }
            }

            Console.WriteLine();
            Console.WriteLine($"{"method",-9} {"attack",-10} {"final %",8} {"best %",7} {"t→70 %",7} {"t→75 %",7} {"t→80 %",7} {"MB up",9} {"messages",9} {"wall s",7}");
            foreach (var run in results)
            {
                Console.WriteLine($"{run.Method,-9} {run.Attack,-10} {BenchmarkFormat.Percent(run.FinalAccuracy),8} {BenchmarkFormat.Percent(run.BestAccuracy),7} " +
                    $"{BenchmarkFormat.Seconds(run.TimeTo(0.70)),7} {BenchmarkFormat.Seconds(run.TimeTo(0.75)),7} {BenchmarkFormat.Seconds(run.TimeTo(0.80)),7} " +
                    $"{run.BytesUp / 1e6,9:F2} {run.Messages,9} {run.WallSeconds,7:F1}");
            }

            return 0;
        }));
        return command;
    }

    private static string[] Split(string list) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
