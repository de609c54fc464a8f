using System.Diagnostics;
using System.Globalization;
using FedEdge.Aggregation.Diagnostics;
using FedEdge.Aggregation.Surrogates;
using FedEdge.Cli.Commands;
using FedEdge.Cloud;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Security;
using FedEdge.Data;
using FedEdge.Edge;
using FedEdge.Edge.Identity;
using FedEdge.Edge.Training;
using FedEdge.Protocol;
using FedEdge.Training;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace FedEdge.Cli.Simulation;

/// <summary>The Mosquitto password and ACL files a simulation wrote for an external broker (algorithms of
/// <see cref="MosquittoConfigWriter"/>): the broker must load them before the cloud and the agents connect.</summary>
public sealed record SimulationBrokerFiles(string PasswordFile, string AclFile);

/// <summary>
/// Runs a whole federation in one process: the cloud host (Orleans silo, SQLite state in a temporary directory, the
/// embedded MQTT broker on a free loopback port or an external one), N registered devices whose
/// <see cref="EdgeAgent"/>s talk real MQTT to it, Fashion-MNIST partitioned among them, malicious devices by update
/// transform (colluding through a <see cref="SimulationCollusion"/> for ALIE and IPM) or flipped labels. After every
/// committed version the global model is evaluated on the Fashion-MNIST test set and the convergence diagnostics of
/// algorithms.md §7 are updated.
/// </summary>
public static class SimulationRunner
{
    public const string Federation = "sim";

    /// <param name="onRound">Called after every committed version (progress display).</param>
    /// <param name="onStatus">Called with a line at each start-up step (data, cloud, agents), before the first round.</param>
    /// <param name="brokerAccess">External broker only: called once the password and ACL files are written, before
    /// anything connects; it must make the broker load them (start it, or signal a running one to reload).</param>
    public static async Task<SimulationResult> RunAsync(SimulationOptions options, Action<SimulationRound>? onRound = null,
        ILoggerFactory? loggers = null, Func<SimulationBrokerFiles, CancellationToken, Task>? brokerAccess = null,
        Action<string>? onStatus = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var total = Stopwatch.StartNew();
        loggers ??= LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Error));
        var directory = Path.Combine(Path.GetTempPath(), "fededge-sim-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);

        // Data: partition the training set, keep the test set for the global model.
        var train = FashionMnist.LoadTrain(options.DataDirectory, FeatureStorage.Byte);
        var test = FashionMnist.LoadTest(options.DataDirectory, FeatureStorage.Byte);
        if (options.EvaluationSamples > 0 && options.EvaluationSamples < test.Count)
            test = test.Subset(Enumerable.Range(0, options.EvaluationSamples).ToArray());
        var shares = Partition.Apply(options.Partition, train.Labels, options.Devices, options.Seed);
        onStatus?.Invoke($"Fashion-MNIST: {train.Count:N0} training samples partitioned {options.Partition} over {options.Devices} devices " +
            $"({shares.Min(s => s.Length):N0}–{shares.Max(s => s.Length):N0} each), {test.Count:N0} test samples");

        var attackerCount = options.AttackerCount;
        var ruleParameters = new Dictionary<string, string>();
        if (options.BucketSize > 1) ruleParameters["bucket"] = options.BucketSize.ToString(CultureInfo.InvariantCulture);
        if (options.ClippingRadius is { } tau) ruleParameters["tau"] = tau.ToString("R", CultureInfo.InvariantCulture);
        var config = new FederationConfig
        {
            Model = options.Model,
            Codec = options.Codec,
            Rule = options.EffectiveRule,
            Rounds = options.Rounds,
            Mode = options.EffectiveMode,
            Algorithm = AlgorithmFor(options, train).ToString(),
            ServerOptimizer = options.ServerOptimizer,
            Staleness = options.Staleness,
            MaxStaleness = options.MaxStaleness,
            MixingRate = options.MixingRate,
            AggregationPeriod = options.AggregationPeriod,
            EstimateAggregation = options.EstimateAggregation,
            ByzantineCount = options.ByzantineCount,
            Seed = options.Seed,
            ErrorFeedback = options.ErrorFeedback,
            BufferSize = options.BufferSize ?? Math.Max(1, options.Devices / 2),
            RoundDeadline = options.RoundDeadline ?? options.RoundTimeout,
            RuleParameters = ruleParameters,
            ServerLearningRate = options.ServerLearningRate,
            MaxNormToMedian = options.MaxNormToMedian,
        };
        var initialModel = new FederationStartOptions { Config = config }.InitialModel();
        var initialVector = new FedEdge.Cloud.Models.OnnxParameterVector(initialModel);
        if (FedEdge.Cloud.Aggregation.FederationStrategyFactory.Validate(config, initialVector.ParameterCount, initialVector.Shape) is { } problem) throw new ArgumentException(problem);
        var l1 = AlgorithmSpec.Parse(config.Algorithm).Number("l1", 0);
        var objectiveData = ObjectiveData(options, train);

        // Attackers: a seeded random choice of devices.
        var order = Enumerable.Range(0, options.Devices).ToArray();
        new Random(options.Seed ^ 0x5eed).Shuffle(order);
        var malicious = order.Take(attackerCount).ToHashSet();
        var collusion = SimulationAttacks.IsOmniscient(options.Attack) && attackerCount > 0
            ? new SimulationCollusion(options.Devices - attackerCount, options.CollusionWait)
            : null;
        if (collusion is not null)
        {
            // Colluding attackers block an agent's thread while they wait for the honest updates (the update
            // transform is synchronous): keep enough pool threads for every agent to train meanwhile.
            ThreadPool.GetMinThreads(out var workers, out var io);
            ThreadPool.SetMinThreads(Math.Max(workers, options.Devices + Environment.ProcessorCount + 4), io);
        }

        var devices = SimulatedDevices.Draw(options);
        var agents = new List<(EdgeAgent Agent, EdgeDeviceIdentity Identity, Task Run)>();
        // The devices train on their own threads, at most one per core at once, so that the co-hosted silo's timing is
        // the cloud's: on the thread pool, 10 devices × 10 local epochs stalled it for 17.6 s.
        using var trainingThreads = new TrainingWorkerPool(Environment.ProcessorCount, "fededge-sim-train");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        IHost? host = null;
        try
        {
            var cloudDirectory = Path.Combine(directory, "cloud");
            var credentials = new List<(string Id, string Password, byte[] PrivateKey)>();
            if (!options.UsesEmbeddedBroker)
            {
                // An external broker authenticates from files: register the devices and the cloud's service identity
                // first (where the cloud host will find them), write the files and let the broker load them.
                var data = new CloudDataDirectory(cloudDirectory);
                Directory.CreateDirectory(data.Root);
                var registry = new DeviceRegistry(data.RegistryDatabase);
                credentials.AddRange(Register(registry, options.Devices));
                var files = new SimulationBrokerFiles(Path.Combine(data.Root, "mosquitto.passwd"), Path.Combine(data.Root, "mosquitto.acl"));
                MosquittoConfigWriter.Write(registry, ServiceIdentity.LoadOrCreate(data.ServiceCredentials), files.PasswordFile, files.AclFile);
                if (brokerAccess is not null) await brokerAccess(files, cancellationToken);
            }

            var embeddedTls = options.UsesEmbeddedBroker && options.EmbeddedBrokerTls ? SimulationTls.Create(Path.Combine(directory, "certs")) : null;
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Error);
            builder.AddFedEdgeCloud(o =>
            {
                o.DataDirectory = cloudDirectory;
                o.Broker = options.UsesEmbeddedBroker ? "embedded" : options.Broker;
                o.UseLoopback();
                o.SqliteSynchronousFull = false;
                o.Tls.CaFile = options.BrokerCaFile;
                embeddedTls?.Configure(o);
            });
            host = builder.Build();
            await host.StartAsync(cancellationToken);
            var cloudKey = host.Services.GetRequiredService<CloudSigningKey>();
            var broker = options.UsesEmbeddedBroker
                ? embeddedTls is null
                    ? $"mqtt://127.0.0.1:{host.Services.GetRequiredService<EmbeddedBroker>().Port}"
                    : $"mqtts://localhost:{host.Services.GetRequiredService<EmbeddedBroker>().TlsPort}"
                : options.Broker;
            if (options.UsesEmbeddedBroker)
                credentials.AddRange(Register(host.Services.GetRequiredService<DeviceRegistry>(), options.Devices));

            // Start the federation once every device is registered (round 1 samples the registered devices).
            var federation = host.Services.GetRequiredService<IGrainFactory>().GetGrain<IFederationGrain>(Federation);
            var started = await federation.StartAsync(config, new Immutable<byte[]>(initialModel));

            using var evaluator = OnnxTrainer.Create(FedEdge.Onnx.OnnxModelFile.Parse(initialModel),
                new TrainingOptions { ZerothOrder = true, Threads = 1 });
            var initialParameters = new float[evaluator.ParameterCount];
            evaluator.CopyParametersTo(initialParameters);
            var initialAccuracy = TrainCommand.Evaluate(evaluator, test).Accuracy;
            onStatus?.Invoke($"cloud up (broker {broker}), federation '{Federation}' at v0 runs {started.Strategy}: d = {started.ParameterCount:N0}, " +
                $"initial test accuracy {100 * initialAccuracy:F2} %; starting {options.Devices} agents");

            var attackerIds = new List<string>();
            if (options.HeterogeneousDevices)
            {
                onStatus?.Invoke("device slowdowns " + string.Join(", ", devices.Select(d => d.Slowdown.ToString("F2", CultureInfo.InvariantCulture)))
                    + (options.OfflineCount > 0 ? $"; outages after local round {string.Join(", ", devices.Where(d => d.OutageAfterRound is not null).Select(d => $"{d.OutageAfterRound} ({d.DeviceId})"))}" : ""));
            }
            // Elapsed time counts from here: data loading and the cloud's start-up are no part of "time to accuracy".
            var agentsStarted = TimeProvider.System.GetUtcNow();
            var sinceAgentsStarted = Stopwatch.StartNew();
            for (var i = 0; i < options.Devices; i++)
            {
                var (id, password, privateKey) = credentials[i];
                var data = train.Subset(shares[i]);
                IUpdateTransform? transform = collusion is null ? null : new SimulationAttacks.Reporting(collusion);
                if (malicious.Contains(i))
                {
                    attackerIds.Add(id);
                    if (options.Attack == "label-flip")
                        data = DataTransforms.RemapLabels(data, DataTransforms.ReverseMap(FashionMnist.ClassCount));
                    if (SimulationAttacks.ReadsHonestData(options.Attack))
                        data = train.Subset([.. Enumerable.Range(0, options.Devices).Where(j => !malicious.Contains(j)).SelectMany(j => shares[j])]);
                    transform = SimulationAttacks.CreateAttack(options.Attack, options.Devices, attackerCount, options.Seed * 7919 + i) is { } attack
                        ? new SimulationAttacks.Forging(attack, collusion, stop.Token)
                        : null;
                }
                var identity = new EdgeDeviceIdentity(id, Federation, id, password, SigningKeyPair.FromPrivateKey(id, privateKey),
                    new VerificationKey("cloud", cloudKey.PublicKey), broker);
                var agentOptions = new EdgeAgentOptions
                {
                    Broker = broker,
                    Mqtt = { CaFile = embeddedTls?.CaFile ?? options.BrokerCaFile },
                    StateDirectory = Path.Combine(directory, "edge", id),
                    Training =
                    {
                        LocalEpochs = options.LocalEpochs, Threads = 1, Seed = options.Seed * 1000 + i,
                        MaxStepsPerRound = options.MaxStepsPerRound, LearningRate = options.LearningRate, BatchSize = options.BatchSize,
                        Optimizer = options.Optimizer switch { "adam" => OptimizerKind.Adam, "momentum" => OptimizerKind.Momentum, _ => OptimizerKind.Sgd },
                    },
                    Compression = { Codec = options.Codec, ErrorFeedback = options.ErrorFeedback },
                    Outbox = { Fsync = false },
                };
                var speed = options.HeterogeneousDevices ? SimulatedDevices.Speed(devices[i], options) : null;
                var agent = new EdgeAgent(agentOptions, identity, new EdgeLocalData(data), clock: TimeProvider.System, loggers: loggers, transform: transform,
                    speed: speed, trainingScheduler: trainingThreads);
                agents.Add((agent, identity, Task.Run(() => agent.RunAsync(stop.Token), CancellationToken.None)));
            }

            // Follow the federation: evaluate each committed version on the test set, track the diagnostics.
            var monotonicity = new MonotonicityMonitor(initialParameters.Length);
            var dispersion = new DispersionMonitor(initialParameters.Length, options.DiagnosticsWindow);
            dispersion.Observe(initialParameters);
            var previous = initialParameters;
            var aggregate = new float[initialParameters.Length];
            var rounds = new List<SimulationRound>();
            var seen = 0;
            var lastProgress = Stopwatch.StartNew();
            while (true)
            {
                var status = await federation.GetStatusAsync();
                if (status.History.Count > seen)
                {
                    var model = await federation.GetModelAsync();
                    EvaluationResult? evaluation = null;
                    double objective = double.NaN, sparsity = double.NaN;
                    if (model is not null)
                    {
                        evaluator.SetParameters(model.Parameters);
                        evaluation = TrainCommand.Evaluate(evaluator, test);
                        objective = evaluator.EvaluateLoss(model.Parameters, objectiveData.Features, objectiveData.Labels)
                            + (l1 * System.Numerics.Tensors.TensorPrimitives.SumOfMagnitudes(model.Parameters));
                        sparsity = (double)model.Parameters.Count(v => v == 0) / model.Parameters.Length;
                        // The aggregate applied at θ_prev is θ − θ_prev (over several versions if polling skipped one).
                        System.Numerics.Tensors.TensorPrimitives.Subtract(model.Parameters, previous, aggregate);
                        monotonicity.ObserveUpdate(previous, aggregate);
                        dispersion.Observe(model.Parameters);
                        previous = model.Parameters;
                    }
                    for (; seen < status.History.Count; seen++)
                    {
                        var summary = status.History[seen];
                        var current = model is not null && model.Version == summary.Version && evaluation is not null;
                        var round = new SimulationRound(summary.Version, summary.Updates, summary.BytesUp,
                            status.PublishedModelBytes * Math.Max(status.LiveDevices, options.Devices), summary.MeanTrainLoss,
                            current ? evaluation!.Value.Accuracy : double.NaN, current ? evaluation!.Value.Loss : double.NaN,
                            summary.Duration.TotalSeconds, summary.MeanStaleness,
                            summary.CompletedAt > agentsStarted ? (summary.CompletedAt - agentsStarted).TotalSeconds : sinceAgentsStarted.Elapsed.TotalSeconds,
                            monotonicity.ViolationFraction, dispersion.Diameter())
                        {
                            Objective = current ? objective : double.NaN,
                            Sparsity = current ? sparsity : double.NaN,
                        };
                        rounds.Add(round);
                        onRound?.Invoke(round);
                    }
                    lastProgress.Restart();
                }
                if (status.Phase == FederationPhase.Finished || seen >= options.Rounds) break;
                var failed = agents.FirstOrDefault(a => a.Run.IsFaulted);
                if (failed.Run is not null) await failed.Run; // surfaces the agent's exception
                if (lastProgress.Elapsed > options.RoundTimeout)
                    throw new TimeoutException($"No new model version for {options.RoundTimeout.TotalSeconds:F0} s (version {status.ModelVersion}, {status.PendingUpdates} pending).");
                await Task.Delay(50, cancellationToken);
            }

            // Let the cloud finish publishing the last version (it commits, then publishes) before everything stops:
            // in sync mode every agent verifies v0…vR; async agents may skip versions, so this waits at most 3 s.
            var drain = Stopwatch.StartNew();
            while (drain.Elapsed < TimeSpan.FromSeconds(3) && agents.Any(a => a.Agent.Statistics.ModelsVerified < rounds.Count + 1))
                await Task.Delay(20, cancellationToken);

            return new SimulationResult(options, started.ParameterCount, initialModel.Length, attackerIds, initialAccuracy, rounds,
                total.Elapsed.TotalSeconds, rounds.Sum(r => r.BytesUp), rounds.Sum(r => r.BytesDown),
                monotonicity.LastToAverageGap(), collusion?.ShortWaits ?? 0, devices, agents.Sum(a => a.Agent.Statistics.Outages))
            { Strategy = started.Strategy };
        }
        finally
        {
            await stop.CancelAsync();
            foreach (var (_, _, run) in agents)
            {
                try { await run; }
                catch (OperationCanceledException) { }
                catch (Exception e) when (cancellationToken.IsCancellationRequested || e is ObjectDisposedException) { }
            }
            foreach (var (_, identity, _) in agents) identity.Dispose();
            if (host is not null)
            {
                try { await host.StopAsync(CancellationToken.None); } finally { host.Dispose(); }
            }
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try { Directory.Delete(directory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>
    /// The announced algorithm: the options' spec, with FedMM's quadratic L bounded from the training features when not
    /// given (logreg: ½·λ_max(E[x̃x̃ᵀ]), <see cref="QuadraticSurrogate.SoftmaxSmoothnessBound"/>).
    /// </summary>
    private static AlgorithmSpec AlgorithmFor(SimulationOptions options, Dataset train)
    {
        var spec = options.AlgorithmSpec;
        if (spec.Name != AlgorithmSpec.FedMM || spec.Word("surrogate", "") != "quadratic" || spec.Parameters.ContainsKey("l"))
            return spec;
        if (options.Model != "logreg")
            throw new ArgumentException($"--algorithm fedmm with the quadratic surrogate on '{options.Model}' needs --smoothness L (the bound from the data holds for logreg only).");
        var features = new float[train.Count * train.SampleSize];
        train.CopyFeatures(0, train.Count, features);
        var bound = QuadraticSurrogate.SoftmaxSmoothnessBound(features, train.SampleSize);
        return spec with { Parameters = new Dictionary<string, string>(spec.Parameters) { ["l"] = bound.ToString("G6", CultureInfo.InvariantCulture) } };
    }

    /// <summary>The samples the per-version objective is computed on (<see cref="SimulationOptions.ObjectiveSamples"/>).</summary>
    private static (float[] Features, long[] Labels) ObjectiveData(SimulationOptions options, Dataset train)
    {
        var count = options.ObjectiveSamples ?? (options.Model is "logreg" or "mlp" ? 0 : 5000);
        count = count <= 0 ? train.Count : Math.Min(count, train.Count);
        var features = new float[count * train.SampleSize];
        var labels = new long[count];
        train.CopyRange(0, count, features, labels);
        return (features, labels);
    }

    /// <summary>The id of simulated device <paramref name="index"/>.</summary>
    public static string DeviceId(int index) => $"sim-{index:D3}";

    private static IEnumerable<(string Id, string Password, byte[] PrivateKey)> Register(DeviceRegistry registry, int devices)
    {
        for (var i = 0; i < devices; i++)
        {
            var id = DeviceId(i);
            var (_, password, privateKey) = registry.Add(id, Federation);
            yield return (id, password, privateKey);
        }
    }
}
