using System.CommandLine;
using System.Globalization;
using FedEdge.Cloud;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge cloud`: runs the cloud aggregator (Orleans silo, embedded MQTT broker unless --broker names one,
/// ingestion bridge) until Ctrl+C. Settings: appsettings.json (section "Cloud"), FEDEDGE_-prefixed environment
/// variables (FEDEDGE_Cloud__BrokerPort=1884), then these flags.
/// </summary>
internal static class CloudCommand
{
    public static Command Create()
    {
        var dataDir = new Option<string?>("--data-dir") { Description = "Data directory: registry, grain state, model store, keys." };
        var broker = new Option<string?>("--broker") { Description = "'embedded' (default) or mqtt://host:port of an external broker such as Mosquitto." };
        var port = new Option<int?>("--port") { Description = "Plain-TCP port of the embedded broker (default 1883)." };
        var bind = new Option<string?>("--bind") { Description = "Addresses of the plain-TCP listener, e.g. 127.0.0.1 (default), ::1, '0.0.0.0,::' (non-loopback needs --allow-plaintext)." };
        var tls = CloudTlsFlags.Create();
        var storage = new Option<StateStorageKind?>("--storage") { Description = "Grain state: Sqlite (default, embedded) or Redis." };
        var clustering = new Option<ClusteringKind?>("--clustering") { Description = "Silo membership: Localhost (default) or Redis." };
        var redis = new Option<string?>("--redis") { Description = "Redis configuration string, when --storage or --clustering is Redis." };
        var siloPort = new Option<int?>("--silo-port") { Description = "Orleans silo port (default 11111)." };
        var gatewayPort = new Option<int?>("--gateway-port") { Description = "Orleans gateway port (default 30000)." };
        var config = new Option<string?>("--config") { Description = "Extra JSON settings file (same shape as appsettings.json)." };
        var federation = new Option<string?>("--federation") { Description = "Start this federation if it is new (its settings: the flags below, or Cloud:Federations:<name>:Config in the settings)." };
        var model = new Option<string?>("--model") { Description = "Zoo model of --federation (default cnn, for 1×28×28 inputs)." };
        var modelFile = new Option<string?>("--model-file") { Description = "Initial model of --federation as an ONNX file (any model the training engine can differentiate), instead of a zoo model." };
        modelFile.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is { } path && !File.Exists(path))
                result.AddError($"--model-file: no file at {Path.GetFullPath(path)}");
        });
        var rule = new Option<string?>("--rule") { Description = "Aggregation rule of --federation: mean, median, trimmed-mean, krum, multi-krum, geomed, centered-clip, sign-vote." };
        var codec = new Option<string?>("--codec") { Description = "Codec hint of --federation: fp32, fp16, topk:0.01, sign." };
        var rounds = new Option<int?>("--rounds") { Description = "Model versions of --federation before it finishes (0 = unbounded)." };
        var mode = new Option<string?>("--mode") { Description = "How --federation makes versions: sync (rounds), fedbuff (async is an alias), fedasync or fedfix." };
        mode.AcceptOnlyFromAmong("sync", "fedbuff", "async", "fedasync", "fedfix");
        var serverOpt = new Option<string?>("--server-opt") { Description = "Server optimizer of --federation: none, fedavgm, fedadam, fedyogi, fedadagrad (step size: Config:ServerLearningRate)." };
        serverOpt.AcceptOnlyFromAmong([.. FedEdge.Aggregation.Strategies.ServerAggregatorOptions.Optimizers]);
        var serverLr = new Option<double?>("--server-lr") { Description = "Server learning rate η of --federation (default 1; FedAdam/FedYogi typically 0.01–0.1)." };
        var algorithm = new Option<string?>("--algorithm")
        {
            Description = "What the devices of --federation compute: fedavg (default), fedmm:surrogate=logistic|quadratic[,l=L][,gamma=…][,p=…] (sync rounds) or far-sign[:order=first|zeroth,directions=K] (set --mode fedasync); the edge agents read it from each model announcement.",
        };
        var l1 = new Option<double?>("--l1") { Description = "λ of g(θ) = λ‖θ‖₁ for --algorithm fedavg (local proximal SGD) or fedmm (in the map T)." };
        var driftClustering = new Option<string?>("--drift-clustering") { Description = "Device clustering of --federation: none (one model) or feddaa (drift-aware cluster models, docs/drift.md)." };
        var reclusterEvery = new Option<int?>("--recluster-every") { Description = "FedDAA: reference-model versions between clustering decisions (default 10)." };
        var warmupVersions = new Option<int?>("--warmup-versions") { Description = "FedDAA: reference-model versions before the first clustering (default 10)." };

        var command = new Command("cloud", "Run the cloud aggregator: Orleans silo, MQTT broker and ingestion.")
        {
            dataDir, broker, port, bind, storage, clustering, redis, siloPort, gatewayPort, config,
            federation, model, modelFile, rule, codec, rounds, mode, serverOpt, serverLr, algorithm, l1, driftClustering, reclusterEvery, warmupVersions,
            KeyCommand(),
            BenchIngestCommand(),
        };
        tls.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Configuration.AddEnvironmentVariables("FEDEDGE_");
            if (parse.GetValue(config) is { } file) builder.Configuration.AddJsonFile(Path.GetFullPath(file), optional: false);
            var flags = new Dictionary<string, string?>();
            void Flag<T>(Option<T> option, string key)
            {
                if (parse.GetValue(option) is { } value) flags[$"{CloudOptions.Section}:{key}"] = value.ToString();
            }
            Flag(dataDir, nameof(CloudOptions.DataDirectory));
            Flag(broker, nameof(CloudOptions.Broker));
            Flag(port, nameof(CloudOptions.BrokerPort));
            Flag(bind, nameof(CloudOptions.BrokerBindAddress));
            Flag(storage, nameof(CloudOptions.Storage));
            Flag(clustering, nameof(CloudOptions.Clustering));
            Flag(redis, nameof(CloudOptions.RedisConnectionString));
            Flag(siloPort, nameof(CloudOptions.SiloPort));
            Flag(gatewayPort, nameof(CloudOptions.GatewayPort));
            tls.Read(parse, flags);
            if (parse.GetValue(federation) is { } name)
            {
                var prefix = $"{CloudOptions.Section}:Federations:{name}:Config";
                if (parse.GetValue(modelFile) is { } onnx)
                {
                    flags[$"{CloudOptions.Section}:Federations:{name}:ModelFile"] = Path.GetFullPath(onnx);
                    // Config:Model then only names the model (in status and logs): the file's name unless --model says otherwise.
                    flags[$"{prefix}:Model"] = parse.GetValue(model) ?? Path.GetFileNameWithoutExtension(onnx);
                }
                else
                {
                    flags[$"{prefix}:Model"] = parse.GetValue(model) ?? "cnn";
                }
                Flag(rule, $"Federations:{name}:Config:Rule");
                Flag(codec, $"Federations:{name}:Config:Codec");
                Flag(rounds, $"Federations:{name}:Config:Rounds");
                Flag(driftClustering, $"Federations:{name}:Config:Clustering");
                Flag(reclusterEvery, $"Federations:{name}:Config:ReclusterEvery");
                Flag(warmupVersions, $"Federations:{name}:Config:WarmupVersions");
                Flag(serverOpt, $"Federations:{name}:Config:ServerOptimizer");
                Flag(serverLr, $"Federations:{name}:Config:ServerLearningRate");
                if (parse.GetValue(algorithm) is { } spec || parse.GetValue(l1) is not null)
                {
                    var parsed = AlgorithmSpec.Parse(parse.GetValue(algorithm) ?? AlgorithmSpec.FedAvg);
                    if (parse.GetValue(l1) is { } lambda)
                        parsed = parsed with { Parameters = new Dictionary<string, string>(parsed.Parameters) { ["l1"] = lambda.ToString("R", CultureInfo.InvariantCulture) } };
                    flags[$"{prefix}:Algorithm"] = parsed.ToString();
                }
                if (parse.GetValue(mode) is { } m)
                    flags[$"{prefix}:Mode"] = (m switch { "fedbuff" or "async" => FederationMode.FedBuff, "fedasync" => FederationMode.FedAsync, "fedfix" => FederationMode.FedFix, _ => FederationMode.Sync }).ToString();
            }
            builder.Configuration.AddInMemoryCollection(flags);
            builder.Logging.AddFilter("Orleans", LogLevel.Warning).AddFilter("Polly", LogLevel.Warning);
            builder.AddFedEdgeCloud();
            using var host = builder.Build();
            await host.RunAsync(cancellationToken);
            return 0;
        });
        return command;
    }

    private static Command BenchIngestCommand()
    {
        var devices = new Option<int>("--devices") { Description = "Publishing devices.", DefaultValueFactory = _ => 10 };
        var updates = new Option<int>("--updates") { Description = "Updates per device.", DefaultValueFactory = _ => 40 };
        var dimension = new Option<int>("--d") { Description = "Update dimension.", DefaultValueFactory = _ => 100_000 };
        var normal = new Option<bool>("--sync-normal") { Description = "SQLite synchronous=NORMAL instead of FULL." };
        var command = new Command("bench-ingest", "Measure ingest of signed sign-codec updates against the embedded broker's ceiling in the same run.")
        {
            devices, updates, dimension, normal,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var result = await FedEdge.Cloud.Benchmarks.IngestBenchmark.RunAsync(parse.GetValue(devices), parse.GetValue(updates), parse.GetValue(dimension),
                synchronousFull: !parse.GetValue(normal), cancellationToken);
            Console.WriteLine(result);
            return 0;
        });
        return command;
    }

    private static Command KeyCommand()
    {
        var dataDir = new Option<string?>("--data-dir") { Description = "Data directory holding the cloud's key." };
        var command = new Command("key", "Print the cloud's Ed25519 public key (base64), creating the key pair on first use.") { dataDir };
        command.SetAction(parse =>
        {
            var directory = parse.GetValue(dataDir) ?? Environment.GetEnvironmentVariable("FEDEDGE_Cloud__DataDirectory") ?? new CloudOptions().DataDirectory;
            Console.WriteLine(Convert.ToBase64String(CloudSigningKey.LoadOrCreate(new CloudDataDirectory(directory)).PublicKey));
            return 0;
        });
        return command;
    }
}
