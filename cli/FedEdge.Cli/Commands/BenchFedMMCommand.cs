using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge bench fedmm`: FedMM (surrogate aggregation, algorithms.md §5) against parameter aggregation, in process,
/// on Fashion-MNIST: L1-regularised logistic regression (fedmm, param-mm, fedavg) or dictionary learning on 8 × 8
/// patches (--model dictionary: fedmm, param-mm). Per round: objective g(θ) + f(θ) on the union of the devices'
/// training data, test accuracy, bytes up and down, sparsity of θ; a table of mean ± sd over seeds at the last round
/// and at equal bytes, and JSON records (one line per round) with --json.
/// </summary>
internal static class BenchFedMMCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "logreg (L1 logistic regression) | dictionary (dictionary learning).", DefaultValueFactory = _ => "logreg" };
        model.AcceptOnlyFromAmong("logreg", "dictionary");
        var rounds = new Option<int>("--rounds") { Description = "Rounds per run.", DefaultValueFactory = _ => 30 };
        var seeds = new Option<int>("--seeds") { Description = "Seeds 0 .. N−1 (partition, sampling, θ₀).", DefaultValueFactory = _ => 3 };
        var firstSeed = new Option<int>("--first-seed") { Description = "First seed.", DefaultValueFactory = _ => 0 };
        var partitions = new Option<string[]>("--partition")
        {
            Description = "iid | dirichlet:α | shards:k (repeatable).",
            DefaultValueFactory = _ => ["dirichlet:0.1", "iid"],
            AllowMultipleArgumentsPerToken = true,
        };
        var methods = new Option<string[]>("--method")
        {
            Description = "fedmm | param-mm | fedavg (repeatable; fedavg only for logreg).",
            AllowMultipleArgumentsPerToken = true,
        };
        var devices = new Option<int>("--devices") { Description = "Devices.", DefaultValueFactory = _ => 20 };
        var codec = new Option<string>("--codec") { Description = "fp32 | fp16 | topk:r | sign: applied to every upload.", DefaultValueFactory = _ => "fp32" };
        var feedback = new Option<string>("--error-feedback") { Description = "Error feedback of the parameter methods: none | ef14 | ef21 | econtrol.", DefaultValueFactory = _ => "none" };
        var l1 = new Option<double>("--l1") { Description = "λ of g = λ‖θ‖₁ (logreg).", DefaultValueFactory = _ => 1e-4 };
        var p = new Option<double>("--p") { Description = "Fraction of devices asked per round.", DefaultValueFactory = _ => 1.0 };
        var gamma = new Option<double>("--gamma") { Description = "FedMM's γ.", DefaultValueFactory = _ => 1.0 };
        var alpha = new Option<double?>("--alpha") { Description = "FedMM's α (default 1/(1 + ω) of the codec)." };
        var surrogate = new Option<string>("--surrogate") { Description = "logreg's surrogate: logistic (diagonal curvature) | quadratic (L from the data).", DefaultValueFactory = _ => "logistic" };
        surrogate.AcceptOnlyFromAmong("logistic", "quadratic");
        var samples = new Option<int>("--train-samples") { Description = "Training samples shared by the devices (a fixed subset).", DefaultValueFactory = _ => 12_000 };
        var epochs = new Option<int>("--local-epochs") { Description = "FedAvg's local epochs.", DefaultValueFactory = _ => 1 };
        var localSteps = new Option<int>("--local-steps") { Description = "param-mm's local MM steps per round.", DefaultValueFactory = _ => 1 };
        var lr = new Option<float>("--lr") { Description = "FedAvg's local learning rate η.", DefaultValueFactory = _ => 0.05f };
        var batch = new Option<int>("--batch") { Description = "FedAvg's local batch.", DefaultValueFactory = _ => 32 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads.", DefaultValueFactory = _ => 2 };
        var atoms = new Option<int>("--atoms") { Description = "Dictionary atoms k.", DefaultValueFactory = _ => 32 };
        var patches = new Option<int>("--patches") { Description = "Patches per device (dictionary).", DefaultValueFactory = _ => 300 };
        var penalty = new Option<double>("--penalty") { Description = "λ_dl of the sparse codes.", DefaultValueFactory = _ => 0.1 };
        var coding = new Option<int>("--coding") { Description = "FISTA iterations per code.", DefaultValueFactory = _ => 50 };
        var data = new Option<string?>("--data") { Description = "Fashion-MNIST directory (default: Debian's dataset-fashion-mnist)." };
        var init = new Option<string>("--init") { Description = "logreg's θ₀: zero (the convex problem's usual start) | zoo (random, from the seed).", DefaultValueFactory = _ => "zero" };
        init.AcceptOnlyFromAmong("zero", "zoo");
        var json = new Option<FileInfo?>("--json") { Description = "Append one JSON record per round here." };
        var quiet = new Option<bool>("--quiet") { Description = "Print only each run's last round." };
        var command = new Command("fedmm", "FedMM (surrogate aggregation) against parameter aggregation on Fashion-MNIST, in process.")
        {
            model, rounds, seeds, firstSeed, partitions, methods, devices, codec, feedback, l1, p, gamma, alpha, surrogate, samples,
            epochs, localSteps, lr, batch, threads, atoms, patches, penalty, coding, data, init, json, quiet,
        };
        command.SetAction((parse, cancellationToken) => Task.FromResult(TrainCommand.Guarded(() =>
        {
            var settings = new FedMMBenchSettings
            {
                Model = parse.GetValue(model)!,
                Rounds = Positive(parse.GetValue(rounds), "--rounds"),
                Devices = Positive(parse.GetValue(devices), "--devices"),
                Codec = parse.GetValue(codec)!,
                ErrorFeedback = parse.GetValue(feedback)!,
                L1 = parse.GetValue(l1),
                Participation = parse.GetValue(p),
                Gamma = parse.GetValue(gamma),
                Alpha = parse.GetValue(alpha),
                Surrogate = parse.GetValue(surrogate)!,
                TrainSamples = Positive(parse.GetValue(samples), "--train-samples"),
                LocalEpochs = Positive(parse.GetValue(epochs), "--local-epochs"),
                LocalSteps = Positive(parse.GetValue(localSteps), "--local-steps"),
                LearningRate = parse.GetValue(lr),
                Batch = Positive(parse.GetValue(batch), "--batch"),
                Threads = parse.GetValue(threads),
                Atoms = Positive(parse.GetValue(atoms), "--atoms"),
                PatchesPerDevice = Positive(parse.GetValue(patches), "--patches"),
                Penalty = parse.GetValue(penalty),
                Coding = Positive(parse.GetValue(coding), "--coding"),
                DataDirectory = parse.GetValue(data),
                ZeroInit = parse.GetValue(init) == "zero",
            };
            var chosen = parse.GetValue(methods) is { Length: > 0 } given
                ? given
                : settings.Model == "logreg" ? ["fedmm", "param-mm", "fedavg"] : ["fedmm", "param-mm"];
            foreach (var method in chosen)
            {
                if (method is not ("fedmm" or "param-mm" or "fedavg") || (method == "fedavg" && settings.Model != "logreg"))
                {
                    throw new ArgumentException($"--method {method}: expected fedmm or param-mm{(settings.Model == "logreg" ? " or fedavg" : "")}.");
                }
            }

            return Run(settings, chosen, parse.GetValue(partitions)!, parse.GetValue(firstSeed), Positive(parse.GetValue(seeds), "--seeds"),
                parse.GetValue(json), parse.GetValue(quiet), cancellationToken);
        })));
        return command;
    }

    private static int Positive(int value, string name) =>
        value > 0 ? value : throw new ArgumentException($"{name} must be positive, not {value}.");

    private static int Run(FedMMBenchSettings settings, string[] methods, string[] partitions, int firstSeed, int seeds, FileInfo? json, bool quiet,
        CancellationToken cancellationToken)
    {
        using var bench = new FedMMBenchmark(settings);
        Console.WriteLine($"fededge bench fedmm: {bench.Describe()}");
        Console.WriteLine($"{settings.Devices} devices, {settings.Rounds} rounds, p = {settings.Participation}, codec {settings.Codec}" +
                          $"{(settings.Model == "logreg" ? $", λ = {settings.L1}, surrogate {settings.Surrogate}, FedAvg E = {settings.LocalEpochs} η = {settings.LearningRate} B = {settings.Batch}" : "")}" +
                          $", FedMM γ = {settings.Gamma}, {Environment.ProcessorCount} cores");
        using var records = json is null ? null : new StreamWriter(json.FullName, append: true);
        var last = new List<FedMMRoundRecord>();
        var all = new List<FedMMRoundRecord>();
        Console.WriteLine($"{"method",-9} {"partition",-14} {"seed",4} {"round",5} {"objective",12} {"loss",10} {"test acc",8} {"MB up",8} {"MB down",8} {"zeros",6} {"s",6}");
        foreach (var partition in partitions)
        {
            for (int seed = firstSeed; seed < firstSeed + seeds; seed++)
            {
                foreach (var method in methods)
                {
                    bench.Run(method, partition, seed, record =>
                    {
                        all.Add(record);
                        records?.WriteLine(JsonSerializer.Serialize(record));
                        if (!quiet || record.Round == settings.Rounds)
                        {
                            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                                $"{method,-9} {partition,-14} {seed,4} {record.Round,5} {record.Objective,12:F6} {record.Loss,10:F5} {(record.TestAccuracy is { } a ? a.ToString("P2", CultureInfo.InvariantCulture) : "-"),8} " +
                                $"{record.BytesUp / 1e6,8:F2} {record.BytesDown / 1e6,8:F2} {record.Sparsity,6:P1} {record.Seconds,6:F2}"));
                        }

                        if (record.Round == settings.Rounds)
                        {
                            last.Add(record);
                        }
                    }, cancellationToken);
                    records?.Flush();
                }
            }
        }

        Console.WriteLine();
        Console.WriteLine($"Round {settings.Rounds}, mean ± sd over {seeds} seed(s):");
        Console.WriteLine($"{"partition",-14} {"method",-9} {"objective",24} {"test acc",18} {"zeros",14} {"MB total",10}");
        foreach (var group in last.GroupBy(r => (r.Partition, r.Method)))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{group.Key.Partition,-14} {group.Key.Method,-9} {Stat(group.Select(r => r.Objective), "F6"),24} " +
                $"{(group.First().TestAccuracy is null ? "-" : Stat(group.Select(r => 100 * r.TestAccuracy!.Value), "F2")),18} " +
                $"{Stat(group.Select(r => 100 * r.Sparsity), "F1"),14} {group.Average(r => r.CumulativeBytes) / 1e6,10:F1}"));
        }

        // At equal bytes: each method's objective at its last round whose cumulative bytes stay within the smallest
        // total any method spent on that partition and seed.
        Console.WriteLine();
        Console.WriteLine("At equal bytes (the smallest total of the methods, per partition and seed):");
        Console.WriteLine($"{"partition",-14} {"method",-9} {"objective",24} {"round",8} {"MB",8}");
        foreach (var partition in all.GroupBy(r => r.Partition))
        {
            var budgets = partition.GroupBy(r => r.Seed).ToDictionary(s => s.Key,
                s => s.GroupBy(r => r.Method).Min(m => m.Max(r => r.CumulativeBytes)));
            foreach (var method in partition.GroupBy(r => r.Method))
            {
                var at = method.GroupBy(r => r.Seed).Select(s => s.Where(r => r.CumulativeBytes <= budgets[s.Key]).MaxBy(r => r.Round)!).ToArray();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{partition.Key,-14} {method.Key,-9} {Stat(at.Select(r => r.Objective), "F6"),24} {at.Average(r => r.Round),8:F1} {at.Average(r => r.CumulativeBytes) / 1e6,8:F1}"));
            }
        }

        return 0;
    }

    private static string Stat(IEnumerable<double> values, string format)
    {
        var v = values.ToArray();
        double mean = v.Average();
        double sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
        return string.Create(CultureInfo.InvariantCulture, $"{mean.ToString(format, CultureInfo.InvariantCulture)} ± {sd.ToString(format, CultureInfo.InvariantCulture)}");
    }
}
