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

    /// <summary>
    /// The user names no device may be registered under: the default service name, the configured ones, and the one in
    /// the data directory's service credential file if it exists (it may have been created under another name).
    /// </summary>
    public static IReadOnlySet<string> ReservedUserNames(string credentialsPath, params string?[] configured)
    {
        var names = new HashSet<string>(StringComparer.Ordinal) { DefaultUserName };
        foreach (var name in configured)
            if (!string.IsNullOrEmpty(name)) names.Add(name);
        if (File.Exists(credentialsPath) && JsonSerializer.Deserialize<ServiceIdentity>(File.ReadAllText(credentialsPath)) is { UserName: { Length: > 0 } stored })
            names.Add(stored);
        return names;
    }

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
