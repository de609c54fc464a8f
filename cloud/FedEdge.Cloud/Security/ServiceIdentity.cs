using System.Text.Json;

namespace FedEdge.Cloud.Security;

/// <summary>
/// The cloud's own MQTT identity (publishes models, reads all updates). Its password is generated on first
/// start and kept in <c>service-credentials.json</c> (0600) in the data directory, or given in options when
/// an external broker was provisioned otherwise.
/// </summary>
public sealed record ServiceIdentity(string UserName, string Password)
{
    public const string DefaultUserName = "fededge-cloud";

    public static ServiceIdentity LoadOrCreate(string path, string userName = DefaultUserName)
    {
        if (File.Exists(path))
        {
            var stored = JsonSerializer.Deserialize<ServiceIdentity>(File.ReadAllText(path))
                ?? throw new InvalidDataException($"Service credential file '{path}' is empty");
            if (string.IsNullOrEmpty(stored.UserName) || string.IsNullOrEmpty(stored.Password))
                throw new InvalidDataException($"Service credential file '{path}' lacks UserName or Password");
            return stored;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var created = new ServiceIdentity(userName, MosquittoPasswordHash.NewPassword());
        SecretFile.WriteAllText(path, JsonSerializer.Serialize(created));
        return created;
    }
}
