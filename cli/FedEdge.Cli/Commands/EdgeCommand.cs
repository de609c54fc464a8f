using System.CommandLine;
using FedEdge.Edge;
using FedEdge.Edge.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge edge`: runs the edge agent until Ctrl+C / SIGTERM. Settings, later ones winning: appsettings.json in
/// the working directory, the --config file, FEDEDGE_-prefixed environment variables (FEDEDGE_Edge__Broker=...),
/// then these flags. See edge/FedEdge.Edge/appsettings.edge.json and docs/edge-agent.md.
/// </summary>
internal static class EdgeCommand
{
    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "Settings file (JSON, section \"Edge\"; see appsettings.edge.json)." };
        var credentials = new Option<string?>("--credentials") { Description = "Device credential file from `fededge devices add`." };
        var broker = new Option<string?>("--broker") { Description = "Broker address mqtt://host:port or mqtts://host:8883 (overrides the credential file's)." };
        var brokerCa = new Option<string?>("--broker-ca") { Description = "PEM CA trusted (and only it) for an mqtts:// broker." };
        var clientCert = new Option<string?>("--client-cert") { Description = "PEM client certificate (CN = device id) for mutual TLS." };
        var clientKey = new Option<string?>("--client-key") { Description = "PEM private key of --client-cert." };
        var data = new Option<string?>("--data") { Description = "Local data: fashion-mnist | npy:X.npy,Y.npy[,Xt.npy,Yt.npy] | csv:train.csv[,test.csv]." };
        var stateDir = new Option<string?>("--state-dir") { Description = "State directory: outbox, last verified model, error-feedback state." };
        var codec = new Option<string?>("--codec") { Description = "Update codec (fp32, fp16, sign, topk:0.01); default: the cloud's hint." };
        var errorFeedback = new Option<string?>("--ef") { Description = "Error feedback: none, ef14, ef21, econtrol (must match the federation)." };
        var epochs = new Option<int?>("--local-epochs") { Description = "Local epochs per round." };
        var partition = new Option<string?>("--partition") { Description = "Demo only: keep this device's share of --data (iid, dirichlet:0.5, shards:2)." };
        var partitionIndex = new Option<int?>("--partition-index") { Description = "This device's index for --partition." };
        var partitionCount = new Option<int?>("--partition-count") { Description = "Number of devices for --partition." };
        var jsonLogs = new Option<bool>("--json-logs") { Description = "Write structured logs as JSON lines." };

        var command = new Command("edge", "Run the edge agent: receive verified models, train locally, send signed compressed updates.")
        {
            config, credentials, broker, data, stateDir, codec, errorFeedback, epochs, partition, partitionIndex, partitionCount, jsonLogs,
            brokerCa, clientCert, clientKey,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var builder = Host.CreateApplicationBuilder();
            if (parse.GetValue(config) is { } file)
                builder.Configuration.AddJsonFile(Path.GetFullPath(file), optional: false);
            builder.Configuration.AddEnvironmentVariables("FEDEDGE_");
            var section = EdgeAgentOptions.SectionName;
            var flags = new Dictionary<string, string?>();
            void Flag<T>(Option<T> option, string key)
            {
                if (parse.GetValue(option) is { } value)
                    flags[$"{section}:{key}"] = value.ToString();
            }
            Flag(credentials, nameof(EdgeAgentOptions.CredentialsPath));
            Flag(broker, nameof(EdgeAgentOptions.Broker));
            Flag(stateDir, nameof(EdgeAgentOptions.StateDirectory));
            Flag(data, "Data:Source");
            Flag(partition, "Data:Partition");
            Flag(partitionIndex, "Data:PartitionIndex");
            Flag(partitionCount, "Data:PartitionCount");
            Flag(codec, "Compression:Codec");
            Flag(errorFeedback, "Compression:ErrorFeedback");
            Flag(epochs, "Training:LocalEpochs");
            Flag(brokerCa, "Mqtt:CaFile");
            Flag(clientCert, "Mqtt:ClientCertificateFile");
            Flag(clientKey, "Mqtt:ClientKeyFile");
            builder.Configuration.AddInMemoryCollection(flags);
            if (parse.GetValue(jsonLogs))
            {
                builder.Logging.ClearProviders();
                builder.Logging.AddJsonConsole();
            }
            builder.AddFedEdgeEdge();
            using var host = builder.Build();
            try
            {
                await host.RunAsync(cancellationToken);
            }
            catch (OptionsValidationException e)
            {
                foreach (var failure in e.Failures)
                    Console.Error.WriteLine($"fededge edge: {failure}");
                return 2;
            }
            return 0;
        });
        return command;
    }
}
