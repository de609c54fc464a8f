using System.Diagnostics;
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

/// <summary>
/// Runs a whole federation in one process: the cloud host (Orleans silo, embedded MQTT broker on a free loopback
/// port, SQLite state in a temporary directory), N registered devices whose <see cref="EdgeAgent"/>s talk real MQTT
/// to it, Fashion-MNIST partitioned among them, malicious devices by update transform or flipped labels. After every
/// committed version the global model is evaluated on the Fashion-MNIST test set.
/// </summary>
public static class SimulationRunner
{
    public const string Federation = "sim";

    public static async Task<SimulationResult> RunAsync(SimulationOptions options, Action<SimulationRound>? onRound = null,
        ILoggerFactory? loggers = null, CancellationToken cancellationToken = default)
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

        var attackerCount = options.AttackerCount;
        var config = new FederationConfig
        {
            Model = options.Model,
            Codec = options.Codec,
            Rule = options.Aggregator,
            Rounds = options.Rounds,
            Mode = options.Mode == "async" ? FederationMode.Async : FederationMode.Sync,
            ByzantineCount = attackerCount,
            Seed = options.Seed,
            ErrorFeedback = options.ErrorFeedback,
            BufferSize = Math.Max(1, options.Devices / 2),
            RoundDeadline = options.RoundTimeout,
        };
        if (config.Validate() is { } problem) throw new ArgumentException(problem);
        var initialModel = new FederationStartOptions { Config = config }.InitialModel();

        var agents = new List<(EdgeAgent Agent, EdgeDeviceIdentity Identity, Task Run)>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        IHost? host = null;
        try
        {
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Error);
            builder.AddFedEdgeCloud(o =>
            {
                o.DataDirectory = Path.Combine(directory, "cloud");
                o.BrokerPort = 0;
                o.BrokerBindAddress = "127.0.0.1";
                o.SiloPort = FreeTcpPort.Find();
                o.GatewayPort = FreeTcpPort.Find();
                o.SqliteSynchronousFull = false;
            });
            host = builder.Build();
            await host.StartAsync(cancellationToken);
            var registry = host.Services.GetRequiredService<DeviceRegistry>();
            var port = host.Services.GetRequiredService<EmbeddedBroker>().Port;
            var cloudKey = host.Services.GetRequiredService<CloudSigningKey>();
            var broker = $"mqtt://127.0.0.1:{port}";

            // Attackers: a seeded random choice of devices.
            var order = Enumerable.Range(0, options.Devices).ToArray();
            new Random(options.Seed ^ 0x5eed).Shuffle(order);
            var malicious = order.Take(attackerCount).ToHashSet();
            var attackerIds = new List<string>();

            var credentials = new List<(string Id, string Password, byte[] PrivateKey)>();
            for (var i = 0; i < options.Devices; i++)
            {
                var id = $"sim-{i:D3}";
                var (_, password, privateKey) = registry.Add(id, Federation);
                credentials.Add((id, password, privateKey));
            }

            // Start the federation once every device is registered (round 1 samples the registered devices).
            var federation = host.Services.GetRequiredService<IGrainFactory>().GetGrain<IFederationGrain>(Federation);
            var started = await federation.StartAsync(config, new Immutable<byte[]>(initialModel));

            using var evaluator = OnnxTrainer.Create(FedEdge.Onnx.OnnxModelFile.Parse(initialModel),
                new TrainingOptions { ZerothOrder = true, Threads = 1 });
            var initialAccuracy = TrainCommand.Evaluate(evaluator, test).Accuracy;

            for (var i = 0; i < options.Devices; i++)
            {
                var (id, password, privateKey) = credentials[i];
                var data = train.Subset(shares[i]);
                IUpdateTransform? transform = null;
                if (malicious.Contains(i))
                {
                    attackerIds.Add(id);
                    if (options.Attack == "label-flip")
                        data = DataTransforms.RemapLabels(data, DataTransforms.ReverseMap(FashionMnist.ClassCount));
                    else
                        transform = SimulationAttacks.Create(options.Attack, options.Seed * 7919 + i);
                }
                var identity = new EdgeDeviceIdentity(id, Federation, id, password, SigningKeyPair.FromPrivateKey(id, privateKey),
                    new VerificationKey("cloud", cloudKey.PublicKey), broker);
                var agentOptions = new EdgeAgentOptions
                {
                    Broker = broker,
                    StateDirectory = Path.Combine(directory, "edge", id),
                    Training =
                    {
                        LocalEpochs = options.LocalEpochs, Threads = 1, Seed = options.Seed * 1000 + i,
                        MaxStepsPerRound = options.MaxStepsPerRound, LearningRate = options.LearningRate, BatchSize = options.BatchSize,
                    },
                    Compression = { Codec = options.Codec, ErrorFeedback = options.ErrorFeedback },
                    Outbox = { Fsync = false },
                };
                var agent = new EdgeAgent(agentOptions, identity, new EdgeLocalData(data), clock: TimeProvider.System, loggers: loggers, transform: transform);
                agents.Add((agent, identity, Task.Run(() => agent.RunAsync(stop.Token), CancellationToken.None)));
            }

            // Follow the federation: evaluate each committed version on the test set.
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
                    if (model is not null)
                    {
                        evaluator.SetParameters(model.Parameters);
                        evaluation = TrainCommand.Evaluate(evaluator, test);
                    }
                    for (; seen < status.History.Count; seen++)
                    {
                        var summary = status.History[seen];
                        var current = model is not null && model.Version == summary.Version && evaluation is not null;
                        var round = new SimulationRound(summary.Version, summary.Updates, summary.BytesUp, summary.MeanTrainLoss,
                            current ? evaluation!.Value.Accuracy : double.NaN, current ? evaluation!.Value.Loss : double.NaN,
                            summary.Duration.TotalSeconds, summary.MeanStaleness, total.Elapsed.TotalSeconds);
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

            return new SimulationResult(options, started.ParameterCount, attackerIds, initialAccuracy, rounds,
                total.Elapsed.TotalSeconds, rounds.Sum(r => r.BytesUp));
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
}
