using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Publishing;
using FedEdge.Cloud.Security;
using FedEdge.Cloud.Storage;
using FedEdge.Cloud.Telemetry.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Runtime.Hosting;
using Orleans.Storage;
using StackExchange.Redis;

namespace FedEdge.Cloud.Hosting;

/// <summary>Wires the cloud service into a generic host: registry, keys, broker, Orleans silo, MQTT bridge.</summary>
public static class CloudHostExtensions
{
    /// <summary>Name of the grain-storage provider every FedEdge grain uses.</summary>
    public const string StorageName = "fededge";

    /// <summary>
    /// Adds the cloud service. Options come from the "Cloud" configuration section, then <paramref name="configure"/>.
    /// Hosted services start in this order: embedded broker, Orleans silo, the cloud's MQTT connection, the bridge.
    /// </summary>
    public static IHostApplicationBuilder AddFedEdgeCloud(this IHostApplicationBuilder builder, Action<CloudOptions>? configure = null)
    {
        // The silo's clustering and storage are chosen while the host is built, so options are read eagerly here
        // and the same values are exposed through IOptions<CloudOptions>.
        var options = new CloudOptions();
        builder.Configuration.GetSection(CloudOptions.Section).Bind(options);
        configure?.Invoke(options);
        Validate(options);

        var services = builder.Services;
        services.AddOptions<CloudOptions>().Configure(o => Copy(options, o));
        var data = new CloudDataDirectory(options.DataDirectory);
        Directory.CreateDirectory(data.Root);
        services.AddSingleton(data);
        services.TryAddSingleton(CloudClock.System);
        services.AddSingleton(_ => new DeviceRegistry(data.RegistryDatabase)
        {
            ReservedNames = ServiceIdentity.ReservedUserNames(data.ServiceCredentials, options.ServiceUserName),
        });
        services.AddSingleton(_ => options.ServicePassword is { Length: > 0 } password
            ? new ServiceIdentity(options.ServiceUserName, password)
            : ServiceIdentity.LoadOrCreate(data.ServiceCredentials, options.ServiceUserName));
        services.AddSingleton(_ => CloudSigningKey.LoadOrCreate(data));
        services.AddSingleton(_ => new FileSystemModelStore(data.ModelStore));

        services.AddSingleton(sp => new RejectionLog(sp.GetRequiredService<ILoggerFactory>().CreateLogger("FedEdge.Cloud.Refusals"),
            sp.GetRequiredService<CloudClock>().Time, options.RejectionLogInterval));
        services.AddSingleton(sp => new LoginThrottle(sp.GetRequiredService<CloudClock>().Time, options.LoginFailureBurstPerName,
            options.LoginFailureBurstPerAddress, options.LoginFailureRefill, options.LoginHashConcurrency));
        if (options.UsesEmbeddedBroker)
        {
            services.AddSingleton<EmbeddedBroker>();
            services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBroker>());
        }

        builder.UseOrleans(silo =>
        {
            if (options.Clustering == ClusteringKind.Redis)
                silo.UseRedisClustering(o => o.ConfigurationOptions = ConfigurationOptions.Parse(options.RedisConnectionString!));
            else
                silo.UseLocalhostClustering(options.SiloPort, options.GatewayPort, serviceId: options.ServiceId, clusterId: options.ClusterId);
            silo.Configure<ClusterOptions>(o => { o.ClusterId = options.ClusterId; o.ServiceId = options.ServiceId; });
            SiloTls.Apply(silo, options.SiloTls);

            // Pending updates: with Redis a model grain may reactivate on another silo, so they go to the grain storage;
            // a single silo keeps them in append-only files, one write per update.
            if (options.Storage == StateStorageKind.Redis)
            {
                silo.AddRedisGrainStorage(StorageName, o => o.ConfigurationOptions = ConfigurationOptions.Parse(options.RedisConnectionString!));
                silo.Services.AddSingleton<IUpdateLog>(sp => new GrainStorageUpdateLog(
                    sp.GetRequiredKeyedService<IGrainStorage>(StorageName), sp.GetRequiredService<ILogger<GrainStorageUpdateLog>>()));
            }
            else
            {
                silo.Services.AddGrainStorage(StorageName, (sp, name) => new SqliteGrainStorage(
                    name, data.StateDatabase,
                    new OrleansGrainStorageSerializer(sp.GetRequiredService<Orleans.Serialization.Serializer>()),
                    sp.GetRequiredService<ILogger<SqliteGrainStorage>>(),
                    options.SqliteSynchronousFull));
                silo.Services.AddSingleton<IUpdateLog>(sp => new FileUpdateLog(
                    data.UpdateLog, options.SqliteSynchronousFull, options.MaxUpdateBytes, sp.GetRequiredService<ILogger<FileUpdateLog>>()));
            }
        });

        services.AddSingleton<MqttServiceConnection>();
        services.AddHostedService(sp => sp.GetRequiredService<MqttServiceConnection>());
        services.AddSingleton<ModelPublication>();
        services.AddSingleton<ClusterAssignmentPublication>();
        services.AddSingleton<IngestionMetrics>();
        services.AddSingleton<MqttIngestionBridge>();
        services.AddHostedService(sp => sp.GetRequiredService<MqttIngestionBridge>());
        services.AddSingleton<IBrokerUpdateIngress>(sp => sp.GetRequiredService<MqttIngestionBridge>());
        services.AddHostedService<FederationActivation>();
        builder.AddFedEdgeTelemetry(new(data.Root, options.SqliteSynchronousFull, (sp, federation) => [.. sp.GetRequiredService<DeviceRegistry>().List(federation).Select(d => new Telemetry.Http.DeviceSummary(d.DeviceId, d.Federation, d.Revoked, d.CreatedAt))],
            (sp, message, cancellationToken) => sp.GetRequiredService<MqttServiceConnection>().PublishAsync(message, cancellationToken))); // drift history, HTTP API, Event Hubs
        return builder;
    }

    private static void Validate(CloudOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.DataDirectory)) throw new ArgumentException("Cloud:DataDirectory is empty");
        if (!options.UsesEmbeddedBroker) options.ExternalBrokerEndpoint(); // throws with the bad value
        Broker.BrokerTlsValidation.Validate(options);
        SiloTls.Validate(options.SiloTls);
        if (options.BrokerPort is < 0 or > 65535) throw new ArgumentException($"Cloud:BrokerPort {options.BrokerPort} is not a port");
        if ((options.Storage == StateStorageKind.Redis || options.Clustering == ClusteringKind.Redis) && string.IsNullOrWhiteSpace(options.RedisConnectionString))
            throw new ArgumentException("Cloud:RedisConnectionString is required when Storage or Clustering is Redis");
        if (options.MaxUpdateBytes <= 0) throw new ArgumentException($"Cloud:MaxUpdateBytes must be positive (got {options.MaxUpdateBytes})");
        if (options.MaxEnvelopeMetadataBytes < 1024) throw new ArgumentException($"Cloud:MaxEnvelopeMetadataBytes must be ≥ 1024 (got {options.MaxEnvelopeMetadataBytes})");
        if (options.ReassemblyShareBytes < 1 || options.ReassemblyShareBytes > options.ReassemblyBudgetBytes)
            throw new ArgumentException($"Cloud:ReassemblyShareBytes must be between 1 and ReassemblyBudgetBytes ({options.ReassemblyBudgetBytes}); got {options.ReassemblyShareBytes}");
        if (options.IngestionConcurrency < 1) throw new ArgumentException($"Cloud:IngestionConcurrency must be ≥ 1 (got {options.IngestionConcurrency})");
        if (options.MaxDeviceFrameBytes < 1024) throw new ArgumentException($"Cloud:MaxDeviceFrameBytes must be ≥ 1024 (got {options.MaxDeviceFrameBytes})");
        if (options.MaxConnectPacketBytes < 1024) throw new ArgumentException($"Cloud:MaxConnectPacketBytes must be ≥ 1024 (got {options.MaxConnectPacketBytes})");
        if (options.MaxConnectionsPerAddress < 1) throw new ArgumentException($"Cloud:MaxConnectionsPerAddress must be ≥ 1 (got {options.MaxConnectionsPerAddress})");
        if (options.RejectionLogInterval <= TimeSpan.Zero) throw new ArgumentException($"Cloud:RejectionLogInterval must be positive (got {options.RejectionLogInterval})");
        if (!(options.DeviceFramesPerSecond > 0) || !(options.DeviceRejectedFramesPerSecond > 0) || !(options.DeviceStatusPerSecond > 0)
            || options.DeviceFrameBurst < 1 || options.DeviceRejectedFrameBurst < 1 || options.DeviceStatusBurst < 1)
            throw new ArgumentException("Cloud:Device{Frames,RejectedFrames,Status}PerSecond must be positive and their bursts ≥ 1");
        if (options.LoginFailureBurstPerName < 1 || options.LoginFailureBurstPerAddress < 1 || options.LoginFailureRefill <= TimeSpan.Zero || options.LoginHashConcurrency < 1)
            throw new ArgumentException("Cloud:LoginFailureBurstPerName/PerAddress and LoginHashConcurrency must be ≥ 1 and LoginFailureRefill positive");
        if (options.ModelChunkBytes < 1024) throw new ArgumentException($"Cloud:ModelChunkBytes must be ≥ 1024 (got {options.ModelChunkBytes})");
    }

    private static void Copy(CloudOptions from, CloudOptions to)
    {
        foreach (var property in typeof(CloudOptions).GetProperties())
            if (property.CanWrite) property.SetValue(to, property.GetValue(from));
    }
}
