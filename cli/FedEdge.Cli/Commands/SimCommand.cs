using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using FedEdge.Cli.Simulation;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge sim`: a whole federation in one process (cloud + broker + N in-process edge agents over real MQTT) on
/// partitioned Fashion-MNIST; prints one line per round as it completes, writes the JSON record and the HTML report.
/// With no flags it runs the README's default: 20 devices, Dirichlet(0.5), sign + EF14, the robust default rule,
/// 20 % ALIE attackers.
/// </summary>
internal static partial class SimCommand
{
    public static Command Create()
    {
        var d = new SimulationOptions();
        var devices = new Option<int>("--devices") { Description = "Simulated devices.", DefaultValueFactory = _ => d.Devices };
        var rounds = new Option<int>("--rounds") { Description = "Model versions to run.", DefaultValueFactory = _ => d.Rounds };
        var model = new Option<string>("--model") { Description = "Zoo model: cnn, mlp, logreg.", DefaultValueFactory = _ => d.Model };
        var partition = new Option<string>("--partition") { Description = "iid, dirichlet:0.5, shards:2.", DefaultValueFactory = _ => d.Partition };
        var codec = new Option<string>("--codec") { Description = "sign, topk:0.01, fp16, fp32.", DefaultValueFactory = _ => d.Codec };
        var ef = new Option<string>("--ef") { Description = "Error feedback: ef14, ef21, econtrol, none.", DefaultValueFactory = _ => d.ErrorFeedback };
        var aggregator = new Option<string>("--aggregator")
        {
            Description = $"{string.Join(", ", FedEdge.Aggregation.AggregationRuleFactory.Names)}.",
            DefaultValueFactory = _ => d.Aggregator,
        };
        var bucket = new Option<int>("--bucket") { Description = "Bucketing pre-aggregator bucket size s (0 = none).", DefaultValueFactory = _ => d.BucketSize };
        var serverLr = new Option<double>("--server-lr") { Description = "Server learning rate η_g (x ← x + η_g·aggregate).", DefaultValueFactory = _ => d.ServerLearningRate };
        var tau = new Option<double?>("--tau") { Description = "Radius τ of centered clipping." };
        var attack = new Option<string>("--attack") { Description = string.Join(", ", SimulationAttacks.Names) + ".", DefaultValueFactory = _ => d.Attack };
        attack.AcceptOnlyFromAmong([.. SimulationAttacks.Names]);
        var attackers = new Option<double>("--attackers") { Description = "Fraction of malicious devices; also the f the robust rule is configured for.", DefaultValueFactory = _ => d.Attackers };
        var assumeF = new Option<int?>("--assume-f") { Description = "f the rule is configured with (default: the attackers; in a clean run the count --attackers gives)." };
        var mode = new Option<string>("--mode") { Description = "sync (rounds), fedbuff (async is an alias), fedasync or fedfix.", DefaultValueFactory = _ => d.Mode };
        var serverOpt = new Option<string>("--server-opt") { Description = "Server optimizer on the aggregate: none, fedavgm, fedadam, fedyogi, fedadagrad (step size --server-lr).", DefaultValueFactory = _ => d.ServerOptimizer };
        var buffer = new Option<int?>("--buffer") { Description = "FedBuff: updates per version K (default: half the devices)." };
        var staleness = new Option<string?>("--staleness") { Description = "Asynchronous modes: s(τ) = fedbuff, constant, polynomial[:a] or hinge[:a,b] (default: the mode's own)." };
        var maxStaleness = new Option<int>("--max-staleness") { Description = "Asynchronous modes: refuse updates more than this many versions behind.", DefaultValueFactory = _ => d.MaxStaleness };
        var alpha = new Option<double>("--alpha") { Description = "FedAsync: mixing rate α.", DefaultValueFactory = _ => d.MixingRate };
        var period = new Option<double>("--period") { Description = "FedFix: aggregation period Δt in seconds.", DefaultValueFactory = _ => d.AggregationPeriod.TotalSeconds };
        var ef21Over = new Option<string>("--ef21-over") { Description = "EF21/EControl: the rule aggregates the devices' 'estimates' (Byz-EF21) or the 'messages'.", DefaultValueFactory = _ => d.EstimateAggregation };
        mode.AcceptOnlyFromAmong("sync", "fedbuff", "async", "fedasync", "fedfix");
        serverOpt.AcceptOnlyFromAmong([.. FedEdge.Aggregation.Strategies.ServerAggregatorOptions.Optimizers]);
        ef21Over.AcceptOnlyFromAmong("estimates", "messages");
        var epochs = new Option<int>("--local-epochs") { Description = "Local epochs per round.", DefaultValueFactory = _ => d.LocalEpochs };
        var maxSteps = new Option<int>("--max-steps") { Description = "Cap on local SGD steps per round (0 = none).", DefaultValueFactory = _ => d.MaxStepsPerRound };
        var optimizer = new Option<string>("--optimizer") { Description = "Local optimizer: sgd, momentum (μ = 0.9), adam.", DefaultValueFactory = _ => d.Optimizer };
        optimizer.AcceptOnlyFromAmong("sgd", "momentum", "adam");
        var learningRate = new Option<float>("--lr") { Description = "Local learning rate.", DefaultValueFactory = _ => d.LearningRate };
        var evalSamples = new Option<int>("--eval-samples") { Description = "Test samples per evaluation (0 = all 10,000).", DefaultValueFactory = _ => d.EvaluationSamples };
        var seed = new Option<int>("--seed") { Description = "Seed of partition, attackers, models and training.", DefaultValueFactory = _ => d.Seed };
        var broker = new Option<string>("--broker") { Description = "embedded, or mqtt://host:port (mqtts://host:port with --broker-ca) of an external broker (e.g. Mosquitto).", DefaultValueFactory = _ => d.Broker };
        var tls = new Option<bool>("--tls") { Description = "Agents connect to the embedded broker over TLS (a CA and broker certificate made for the run, the CA pinned)." };
        var brokerCa = new Option<string?>("--broker-ca") { Description = "PEM CA trusted (and only it) by the cloud and the agents for an mqtts:// --broker." };
        var brokerFiles = new Option<string?>("--broker-files")
        {
            Description = "External broker: copy the generated Mosquitto password and ACL files (fededge.passwd, fededge.acl) into this directory.",
        };
        var brokerPid = new Option<int?>("--broker-pid") { Description = "External broker: send this process (Mosquitto) SIGHUP to reload the files." };
        var roundDeadline = new Option<double?>("--round-deadline") { Description = "Seconds after which a round closes with the updates that arrived (default: 600)." };
        var giveUp = new Option<double?>("--give-up") { Description = "Stop the run when no new model version was committed for this many seconds (default: 600)." };
        var deviceSpeed = new Option<string>("--device-speed")
        {
            Description = "Device speeds: uniform (all as fast as this machine) or lognormal:SIGMA (device i is exp(SIGMA·z_i) times slower, z_i ~ N(0,1) seeded by --seed).",
            DefaultValueFactory = _ => d.DeviceSpeed,
        };
        var stragglers = new Option<double>("--stragglers") { Description = "Fraction of devices that straggle (a seeded choice).", DefaultValueFactory = _ => d.Stragglers };
        var stragglerSlowdown = new Option<double>("--straggler-slowdown") { Description = "How many times slower a straggler is, on top of its speed.", DefaultValueFactory = _ => d.StragglerSlowdown };
        var offline = new Option<double>("--offline") { Description = "Fraction of devices that go offline once (disconnect after a seeded local round, update held back).", DefaultValueFactory = _ => d.Offline };
        var offlineSeconds = new Option<double>("--offline-seconds") { Description = "Simulated seconds an offline device stays away.", DefaultValueFactory = _ => d.OfflineSeconds };
        var timeScale = new Option<double>("--time-scale") { Description = "Real seconds per simulated second of the devices' extra time and outages (e.g. 0.1 for 10x shorter runs).", DefaultValueFactory = _ => d.TimeScale };
        var targetAccuracy = new Option<double>("--target-accuracy") { Description = "Test accuracy whose wall-clock time the run reports.", DefaultValueFactory = _ => d.TargetAccuracy };
        var json = new Option<string>("--json") { Description = "Write the run record as JSON to this file.", DefaultValueFactory = _ => "run.json" };
        var report = new Option<string>("--report") { Description = "Write the HTML report (accuracy, bytes, diagnostics) to this file.", DefaultValueFactory = _ => "run.html" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)." };
        var algorithm = new Option<string>("--algorithm")
        {
            Description = "What devices compute: fedavg (local training), fedmm (surrogate statistics, sync rounds) or far-sign (signed directional derivatives, fully asynchronous); parameters may follow, e.g. fedmm:gamma=0.5,p=0.5.",
            DefaultValueFactory = _ => d.Algorithm,
        };
        var l1 = new Option<double>("--l1") { Description = "λ of g(θ) = λ‖θ‖₁ (fedavg: local proximal SGD; fedmm: in the map T).", DefaultValueFactory = _ => d.L1 };
        var surrogate = new Option<string?>("--surrogate") { Description = "FedMM: quadratic or logistic (default: logistic for logreg, else quadratic)." };
        var smoothness = new Option<double?>("--smoothness") { Description = "FedMM quadratic surrogate: L (default for logreg: a bound from the data)." };
        var order = new Option<string?>("--order") { Description = "FAR-SIGN: first (sign of the gradient along u_k) or zeroth (sign of a loss difference)." };
        var directions = new Option<int?>("--directions") { Description = "FAR-SIGN: directions K answered per message." };
        var objectiveSamples = new Option<int?>("--objective-samples") { Description = "Training samples of the per-version objective g + f (0 = all; default: all for logreg/mlp, 5,000 otherwise)." };
        var scenario = new Option<string?>("--scenario") { Description = "Run a drift scenario: feddaa-fmnist[-real|-virtual|-label][-mlp|-small|-tiny], in the in-process harness instead of the MQTT federation (docs/drift.md)." };

        var command = new Command("sim", "Simulate a federation in one process: cloud, broker and N edge agents over loopback MQTT on Fashion-MNIST.")
        {
            devices, rounds, model, partition, codec, ef, aggregator, bucket, tau, serverLr, attack, attackers, assumeF, mode, serverOpt, buffer, staleness,
            maxStaleness, alpha, period, ef21Over, epochs, maxSteps, optimizer, learningRate,
            evalSamples, seed, broker, brokerCa, tls, brokerFiles, brokerPid, roundDeadline, giveUp, deviceSpeed, stragglers, stragglerSlowdown, offline, offlineSeconds,
            timeScale, targetAccuracy, json, report, dataDir, scenario, algorithm, l1, surrogate, smoothness, order, directions, objectiveSamples,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(scenario) is { } scenarioName)
            {
                return FedEdge.Cli.Scenarios.DriftScenarioCommand.Run(scenarioName, parse.GetValue(seed), parse.GetValue(json), parse.GetValue(report), parse.GetValue(dataDir), cancellationToken);
            }

            var options = new SimulationOptions
            {
                Devices = parse.GetValue(devices),
                Rounds = parse.GetValue(rounds),
                Model = parse.GetValue(model)!,
                Partition = parse.GetValue(partition)!,
                Codec = parse.GetValue(codec)!,
                ErrorFeedback = parse.GetValue(ef)!,
                Aggregator = parse.GetValue(aggregator)!,
                BucketSize = parse.GetValue(bucket),
                ClippingRadius = parse.GetValue(tau),
                ServerLearningRate = parse.GetValue(serverLr),
                Attack = parse.GetValue(attack)!,
                Attackers = parse.GetValue(attackers),
                AssumedByzantine = parse.GetValue(assumeF),
                Mode = parse.GetValue(mode)!,
                ServerOptimizer = parse.GetValue(serverOpt)!,
                BufferSize = parse.GetValue(buffer),
                Staleness = parse.GetValue(staleness) ?? "",
                MaxStaleness = parse.GetValue(maxStaleness),
                MixingRate = parse.GetValue(alpha),
                AggregationPeriod = TimeSpan.FromSeconds(parse.GetValue(period)),
                EstimateAggregation = parse.GetValue(ef21Over)!,
                LocalEpochs = parse.GetValue(epochs),
                MaxStepsPerRound = parse.GetValue(maxSteps),
                Optimizer = parse.GetValue(optimizer)!,
                LearningRate = parse.GetValue(learningRate),
                EvaluationSamples = parse.GetValue(evalSamples),
                Seed = parse.GetValue(seed),
                Broker = parse.GetValue(broker)!,
                EmbeddedBrokerTls = parse.GetValue(tls),
                BrokerCaFile = parse.GetValue(brokerCa) is { } caFile ? Path.GetFullPath(caFile) : null,
                DataDirectory = parse.GetValue(dataDir),
                RoundDeadline = parse.GetValue(roundDeadline) is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
                DeviceSpeed = parse.GetValue(deviceSpeed)!,
                Stragglers = parse.GetValue(stragglers),
                StragglerSlowdown = parse.GetValue(stragglerSlowdown),
                Offline = parse.GetValue(offline),
                OfflineSeconds = parse.GetValue(offlineSeconds),
                TimeScale = parse.GetValue(timeScale),
                TargetAccuracy = parse.GetValue(targetAccuracy),
                Algorithm = parse.GetValue(algorithm)!,
                L1 = parse.GetValue(l1),
                Surrogate = parse.GetValue(surrogate),
                Smoothness = parse.GetValue(smoothness),
                Order = parse.GetValue(order),
                Directions = parse.GetValue(directions),
                ObjectiveSamples = parse.GetValue(objectiveSamples),
            };
            if (parse.GetValue(giveUp) is { } giveUpSeconds) options = options with { RoundTimeout = TimeSpan.FromSeconds(giveUpSeconds) };
            try
            {
                options.Validate();
                Console.WriteLine("fededge sim: " + SimulationReport.Describe(options));
                var headerShown = false;
                var result = await SimulationRunner.RunAsync(options, r =>
                {
                    if (!headerShown) Console.WriteLine(Header);
                    headerShown = true;
                    Console.WriteLine(FormatRound(r));
                },
                    brokerAccess: BrokerAccess(parse.GetValue(brokerFiles), parse.GetValue(brokerPid)),
                    onStatus: line => Console.WriteLine("  " + line), cancellationToken: cancellationToken);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"done: {result.Rounds.Count} rounds in {result.TotalSeconds:F1} s, {result.TotalBytesUp:N0} bytes up, {result.TotalBytesDown:N0} bytes down, " +
                    $"d = {result.ParameterCount:N0}, accuracy {100 * result.InitialAccuracy:F2} % -> {100 * SimulationReport.FinalAccuracy(result):F2} %{(result.Outages > 0 ? $", {result.Outages} outage(s)" : "")}"));
                Console.WriteLine(SimulationReport.DescribeTimeToTarget(result));
                var jsonPath = parse.GetValue(json)!;
                var htmlPath = parse.GetValue(report)!;
                SimulationReport.WriteJson(result, jsonPath);
                SimulationReport.WriteHtml(result, htmlPath);
                Console.WriteLine($"wrote {Path.GetFullPath(jsonPath)} and {Path.GetFullPath(htmlPath)}");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or FileNotFoundException or DirectoryNotFoundException or TimeoutException or InvalidOperationException or IOException)
            {
                Console.Error.WriteLine($"fededge sim: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    internal static readonly string Header =
        $"{"round",5} {"devices",7} {"bytes up",12} {"bytes down",13} {"train loss",10} {"test acc",9} {"objective",10} {"sparsity",8} {"round s",8} {"elapsed s",9}";

    internal static string FormatRound(SimulationRound r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Round,5} {r.Participants,7} {r.BytesUp,12:N0} {r.BytesDown,13:N0} {(r.MeanTrainLoss is { } l ? l.ToString("F4", CultureInfo.InvariantCulture) : "-"),10} {(double.IsFinite(r.TestAccuracy) ? (100 * r.TestAccuracy).ToString("F2", CultureInfo.InvariantCulture) + "%" : "-"),9} {(double.IsFinite(r.Objective) ? r.Objective.ToString("F4", CultureInfo.InvariantCulture) : "-"),10} {(double.IsFinite(r.Sparsity) ? (100 * r.Sparsity).ToString("F1", CultureInfo.InvariantCulture) + "%" : "-"),8} {r.RoundSeconds,8:F2} {r.ElapsedSeconds,9:F1}");

    /// <summary>For an external broker: copy the generated files where the broker reads them and make it reload.</summary>
    private static Func<SimulationBrokerFiles, CancellationToken, Task>? BrokerAccess(string? directory, int? pid) =>
        directory is null && pid is null ? null : async (files, cancellationToken) =>
        {
            if (directory is not null)
            {
                Directory.CreateDirectory(directory);
                File.Copy(files.PasswordFile, Path.Combine(directory, "fededge.passwd"), overwrite: true);
                File.Copy(files.AclFile, Path.Combine(directory, "fededge.acl"), overwrite: true);
                Console.WriteLine($"wrote the broker's password and ACL files to {Path.GetFullPath(directory)}");
            }
            if (pid is { } id)
            {
                // Mosquitto re-reads its password and ACL files on SIGHUP.
                if (Kill(id, 1) != 0) throw new InvalidOperationException($"Could not signal broker process {id} (errno {Marshal.GetLastPInvokeError()}).");
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        };

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
