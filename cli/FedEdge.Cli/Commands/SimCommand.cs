using System.CommandLine;
using System.Globalization;
using FedEdge.Cli.Simulation;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge sim`: a whole federation in one process (cloud + embedded broker on a free loopback port + N in-process
/// edge agents over real MQTT) on partitioned Fashion-MNIST; prints one line per round, writes JSON / HTML records.
/// </summary>
internal static class SimCommand
{
    public static Command Create()
    {
        var devices = new Option<int>("--devices") { Description = "Simulated devices.", DefaultValueFactory = _ => 10 };
        var rounds = new Option<int>("--rounds") { Description = "Model versions to run.", DefaultValueFactory = _ => 5 };
        var model = new Option<string>("--model") { Description = "Zoo model: cnn, mlp, logreg.", DefaultValueFactory = _ => "cnn" };
        var partition = new Option<string>("--partition") { Description = "iid, dirichlet:0.5, shards:2.", DefaultValueFactory = _ => "dirichlet:0.5" };
        var codec = new Option<string>("--codec") { Description = "sign, topk:0.01, fp16, fp32.", DefaultValueFactory = _ => "sign" };
        var ef = new Option<string>("--ef") { Description = "Error feedback: ef14, ef21, econtrol, none.", DefaultValueFactory = _ => "ef14" };
        var aggregator = new Option<string>("--aggregator") { Description = "mean, median, trimmed-mean, krum, geomed, centered-clip, sign-vote.", DefaultValueFactory = _ => "mean" };
        var attack = new Option<string>("--attack") { Description = "none, sign-flip, gaussian, label-flip.", DefaultValueFactory = _ => "none" };
        attack.AcceptOnlyFromAmong("none", "sign-flip", "gaussian", "label-flip");
        var attackers = new Option<double>("--attackers") { Description = "Fraction of malicious devices.", DefaultValueFactory = _ => 0.2 };
        var mode = new Option<string>("--mode") { Description = "sync (rounds) or async (FedBuff).", DefaultValueFactory = _ => "sync" };
        mode.AcceptOnlyFromAmong("sync", "async");
        var epochs = new Option<int>("--local-epochs") { Description = "Local epochs per round.", DefaultValueFactory = _ => 1 };
        var maxSteps = new Option<int>("--max-steps") { Description = "Cap on local SGD steps per round (0 = none).", DefaultValueFactory = _ => 0 };
        var learningRate = new Option<float>("--lr") { Description = "Local learning rate.", DefaultValueFactory = _ => 0.01f };
        var evalSamples = new Option<int>("--eval-samples") { Description = "Test samples per evaluation (0 = all 10,000).", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { Description = "Seed of partition, attackers, models and training.", DefaultValueFactory = _ => 0 };
        var json = new Option<string?>("--json") { Description = "Write the run record as JSON to this file." };
        var report = new Option<string?>("--report") { Description = "Write an HTML report with an accuracy plot to this file." };
        var dataDir = new Option<string?>("--data-dir") { Description = "Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)." };

        var command = new Command("sim", "Simulate a federation in one process: cloud, embedded broker and N edge agents over loopback MQTT on Fashion-MNIST.")
        {
            devices, rounds, model, partition, codec, ef, aggregator, attack, attackers, mode, epochs, maxSteps, learningRate, evalSamples, seed,
            json, report, dataDir,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = new SimulationOptions
            {
                Devices = parse.GetValue(devices),
                Rounds = parse.GetValue(rounds),
                Model = parse.GetValue(model)!,
                Partition = parse.GetValue(partition)!,
                Codec = parse.GetValue(codec)!,
                ErrorFeedback = parse.GetValue(ef)!,
                Aggregator = parse.GetValue(aggregator)!,
                Attack = parse.GetValue(attack)!,
                Attackers = parse.GetValue(attackers),
                Mode = parse.GetValue(mode)!,
                LocalEpochs = parse.GetValue(epochs),
                MaxStepsPerRound = parse.GetValue(maxSteps),
                LearningRate = parse.GetValue(learningRate),
                EvaluationSamples = parse.GetValue(evalSamples),
                Seed = parse.GetValue(seed),
                DataDirectory = parse.GetValue(dataDir),
            };
            try
            {
                options.Validate();
                Console.WriteLine($"fededge sim: {options.Devices} devices ({options.AttackerCount} {options.Attack} attackers), {options.Model}, {options.Partition}, " +
                    $"{options.Codec} + {options.ErrorFeedback}, {options.Aggregator}, {options.Mode}, {options.Rounds} rounds");
                Console.WriteLine($"{"round",5} {"devices",7} {"bytes up",12} {"train loss",10} {"test acc",9} {"round s",8}");
                var result = await SimulationRunner.RunAsync(options, r => Console.WriteLine(FormatRound(r)), cancellationToken: cancellationToken);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"done: {result.Rounds.Count} rounds in {result.TotalSeconds:F1} s, {result.TotalBytesUp:N0} bytes up, d = {result.ParameterCount:N0}, " +
                    $"accuracy {100 * result.InitialAccuracy:F2} % -> {100 * (result.Rounds.Count > 0 ? result.Rounds[^1].TestAccuracy : result.InitialAccuracy):F2} %"));
                if (parse.GetValue(json) is { } jsonPath) SimulationReport.WriteJson(result, jsonPath);
                if (parse.GetValue(report) is { } htmlPath) SimulationReport.WriteHtml(result, htmlPath);
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or FileNotFoundException or DirectoryNotFoundException or TimeoutException or InvalidOperationException)
            {
                Console.Error.WriteLine($"fededge sim: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    internal static string FormatRound(SimulationRound r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Round,5} {r.Participants,7} {r.BytesUp,12:N0} {(r.MeanTrainLoss is { } l ? l.ToString("F4", CultureInfo.InvariantCulture) : "-"),10} {(double.IsFinite(r.TestAccuracy) ? (100 * r.TestAccuracy).ToString("F2", CultureInfo.InvariantCulture) + "%" : "-"),9} {r.RoundSeconds,8:F2}");
}
