using System.Text.Json;
using System.Text.Json.Serialization;

namespace FedEdge.Cloud.Security;

/// <summary>
/// The credential file a device receives from <c>fededge devices add --out device.json</c> and the edge
/// agent loads: its MQTT identity, its Ed25519 key pair (raw 32-byte keys, base64) and the cloud's public
/// key for verifying models. The file holds secrets and is written with mode 0600.
/// </summary>
public sealed record DeviceCredentials
{
    public const int FormatVersion = 1;

    [JsonPropertyName("version")] public int Version { get; init; } = FormatVersion;
    [JsonPropertyName("deviceId")] public required string DeviceId { get; init; }
    [JsonPropertyName("federation")] public required string Federation { get; init; }
    /// <summary>MQTT user name; equals the device id (the broker also requires client id = device id).</summary>
    [JsonPropertyName("mqttUserName")] public required string MqttUserName { get; init; }
    [JsonPropertyName("mqttPassword")] public required string MqttPassword { get; init; }
    /// <summary>Ed25519 private key, raw 32 bytes, base64.</summary>
    [JsonPropertyName("signingPrivateKey")] public required string SigningPrivateKey { get; init; }
    /// <summary>Ed25519 public key, raw 32 bytes, base64.</summary>
    [JsonPropertyName("signingPublicKey")] public required string SigningPublicKey { get; init; }
    /// <summary>The cloud's Ed25519 public key, raw 32 bytes, base64: models must verify against it.</summary>
    [JsonPropertyName("cloudPublicKey")] public required string CloudPublicKey { get; init; }
    /// <summary>Key id of the cloud key (the announcements' <c>cloud_key_id</c>).</summary>
    [JsonPropertyName("cloudKeyId")] public string CloudKeyId { get; init; } = CloudSigningKey.KeyId;
    /// <summary>Broker address for the agent, e.g. mqtt://cloud.example:1883 (optional; the agent may override).</summary>
    [JsonPropertyName("broker")] public string? Broker { get; init; }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public void Save(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
        SecretFile.WriteAllText(path, JsonSerializer.Serialize(this, Json));
    }

    public static DeviceCredentials Load(string path) =>
        JsonSerializer.Deserialize<DeviceCredentials>(File.ReadAllText(path), Json)
        ?? throw new InvalidDataException($"Device credential file '{path}' is empty");
}
