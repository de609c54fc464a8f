using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Security;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FedEdge.Cloud.Hosting;

/// <summary>
/// On start, activates every federation the registry knows, so each republishes its current model (the embedded
/// broker's retained messages do not survive a restart) and re-arms its round deadline; a clustered (FedDAA)
/// federation's cluster directory resumes too (its cluster models republish, assignments are republished).
/// Federations declared in configuration (<see cref="CloudOptions.Federations"/>) are started first if new.
/// </summary>
public sealed class FederationActivation(DeviceRegistry registry, IGrainFactory grains, MqttServiceConnection mqtt,
    IOptions<CloudOptions> options, ILogger<FederationActivation> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Not a warning: simulations and tests host the cloud in a process tuned for something else.
        logger.LogInformation("Runtime: {Runtime}{Advice}", CloudRuntimeSettings.Describe(), CloudRuntimeSettings.AsDeployed ? ""
            : $"; deployments set {CloudRuntimeSettings.Prefix}, without which ingest costs about twice the CPU (docs/cloud.md, Runtime settings)");
        await mqtt.Connected.WaitAsync(cancellationToken);
        foreach (var (name, declared) in options.Value.Federations)
        {
            var grain = grains.GetGrain<IFederationGrain>(Identifiers.Require(name, "federation"));
            if ((await grain.GetStatusAsync()).Phase == FederationPhase.NotStarted)
                await grain.StartAsync(declared.Config, new Orleans.Concurrency.Immutable<byte[]>(declared.InitialModel()));
        }
        foreach (var federation in registry.ListFederations())
        {
            var status = await grains.GetGrain<IFederationGrain>(federation).GetStatusAsync();
            logger.LogInformation("Federation {Federation}: {Phase} at v{Version}, {Pending} pending", federation, status.Phase, status.ModelVersion, status.PendingUpdates);
            // A clustered federation's cluster models and the devices' retained assignments are republished too.
            if (status.Config is { IsClustered: true }) await grains.GetGrain<IClusterDirectoryGrain>(federation).ResumeAsync();
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
