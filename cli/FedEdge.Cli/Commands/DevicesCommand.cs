using System.CommandLine;
using FedEdge.Cloud;
using FedEdge.Cloud.Security;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge devices add|list|revoke|export-mosquitto`: the device registry in the cloud's data directory.
/// Works while the cloud runs (the registry is a shared SQLite file).
/// </summary>
internal static class DevicesCommand
{
    public static Command Create()
    {
        var dataDir = new Option<string>("--data-dir")
        {
            Description = "The cloud's data directory (registry, keys).",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("FEDEDGE_Cloud__DataDirectory") ?? new CloudOptions().DataDirectory,
            Recursive = true,
        };

        var command = new Command("devices", "Manage the device registry: credentials, keys, revocation, Mosquitto files.")
        {
            dataDir,
            AddCommand(dataDir),
            ListCommand(dataDir),
            RevokeCommand(dataDir),
            ExportMosquittoCommand(dataDir),
        };
        return command;
    }

    private static Command AddCommand(Option<string> dataDir)
    {
        var id = new Argument<string>("id") { Description = "Device id (1–64 of [A-Za-z0-9-_.])." };
        var federation = new Option<string>("--federation") { Description = "Federation the device belongs to.", Required = true };
        var output = new Option<string?>("--out") { Description = "Credential file to write for the device (default: <id>.json)." };
        var broker = new Option<string?>("--broker") { Description = "Broker address to put in the credential file, e.g. mqtt://cloud:1883." };
        var maxSamples = new Option<long?>("--max-samples") { Description = "Size of the device's local dataset: the most samples it may claim for one update (larger claims are capped to it)." };
        var command = new Command("add", "Register a device: generates its MQTT password and Ed25519 key pair and writes its credential file.")
        {
            id, federation, output, broker, maxSamples,
        };
        command.SetAction(parse =>
        {
            var data = new CloudDataDirectory(parse.GetValue(dataDir)!);
            var registry = new DeviceRegistry(data.RegistryDatabase)
            {
                ReservedNames = ServiceIdentity.ReservedUserNames(data.ServiceCredentials, Environment.GetEnvironmentVariable("FEDEDGE_Cloud__ServiceUserName")),
            };
            var cloudKey = CloudSigningKey.LoadOrCreate(data);
            var deviceId = parse.GetValue(id)!;
            DeviceRecord record;
            string password;
            byte[] privateKey;
            try
            {
                (record, password, privateKey) = registry.Add(deviceId, parse.GetValue(federation)!, parse.GetValue(maxSamples));
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                Console.Error.WriteLine($"fededge devices add: {e.Message}");
                return 1;
            }
            var path = parse.GetValue(output) ?? $"{record.DeviceId}.json";
            new DeviceCredentials
            {
                DeviceId = record.DeviceId,
                Federation = record.Federation,
                MqttUserName = record.DeviceId,
                MqttPassword = password,
                SigningPrivateKey = Convert.ToBase64String(privateKey),
                SigningPublicKey = Convert.ToBase64String(record.PublicKey),
                CloudPublicKey = Convert.ToBase64String(cloudKey.PublicKey),
                Broker = parse.GetValue(broker),
            }.Save(path);
            Console.WriteLine($"registered {record.DeviceId} in federation {record.Federation}; credentials written to {path} (keep it secret)");
            return 0;
        });
        return command;
    }

    private static Command ListCommand(Option<string> dataDir)
    {
        var federation = new Option<string?>("--federation") { Description = "Only this federation's devices." };
        var command = new Command("list", "List registered devices.") { federation };
        command.SetAction(parse =>
        {
            var registry = new DeviceRegistry(new CloudDataDirectory(parse.GetValue(dataDir)!).RegistryDatabase);
            var devices = registry.List(parse.GetValue(federation));
            Console.WriteLine($"{"DEVICE",-24} {"FEDERATION",-16} {"STATUS",-8} {"CREATED (UTC)",-20} PUBLIC KEY");
            foreach (var d in devices)
                Console.WriteLine($"{d.DeviceId,-24} {d.Federation,-16} {(d.Revoked ? "revoked" : "active"),-8} {d.CreatedAt.UtcDateTime:yyyy-MM-dd HH:mm:ss}  {Convert.ToBase64String(d.PublicKey)}");
            Console.WriteLine($"{devices.Count} device(s)");
            return 0;
        });
        return command;
    }

    private static Command RevokeCommand(Option<string> dataDir)
    {
        var id = new Argument<string>("id") { Description = "Device id to revoke." };
        var command = new Command("revoke", "Revoke a device: the broker refuses its logins and the cloud rejects its updates.") { id };
        command.SetAction(parse =>
        {
            var registry = new DeviceRegistry(new CloudDataDirectory(parse.GetValue(dataDir)!).RegistryDatabase);
            var deviceId = parse.GetValue(id)!;
            if (!registry.Revoke(deviceId))
            {
                Console.Error.WriteLine($"no device '{deviceId}' in the registry");
                return 1;
            }
            Console.WriteLine($"revoked {deviceId} (re-export the Mosquitto files if an external broker is used)");
            return 0;
        });
        return command;
    }

    private static Command ExportMosquittoCommand(Option<string> dataDir)
    {
        var passwd = new Option<string>("--passwd") { Description = "Mosquitto password file to write.", Required = true };
        var acl = new Option<string>("--acl") { Description = "Mosquitto ACL file to write.", Required = true };
        var serviceUser = new Option<string>("--service-user") { Description = "The cloud's MQTT user name.", DefaultValueFactory = _ => ServiceIdentity.DefaultUserName };
        var command = new Command("export-mosquitto", "Write Mosquitto's password file ($7$ PBKDF2-SHA512) and ACL file from the registry.")
        {
            passwd, acl, serviceUser,
        };
        command.SetAction(parse =>
        {
            var data = new CloudDataDirectory(parse.GetValue(dataDir)!);
            var registry = new DeviceRegistry(data.RegistryDatabase);
            var service = ServiceIdentity.LoadOrCreate(data.ServiceCredentials, parse.GetValue(serviceUser)!);
            try
            {
                MosquittoConfigWriter.Write(registry, service, parse.GetValue(passwd)!, parse.GetValue(acl)!);
            }
            catch (InvalidOperationException e)
            {
                Console.Error.WriteLine($"fededge devices export-mosquitto: {e.Message}");
                return 1;
            }
            Console.WriteLine($"wrote {parse.GetValue(passwd)} and {parse.GetValue(acl)} for {registry.List().Count(d => !d.Revoked)} active device(s) and the service user {service.UserName}");
            return 0;
        });
        return command;
    }
}
