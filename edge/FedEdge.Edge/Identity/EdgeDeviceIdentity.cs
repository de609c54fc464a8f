using System.Text.Json;
using System.Text.Json.Serialization;
using FedEdge.Protocol;

namespace FedEdge.Edge.Identity;

/// <summary>Who the device is: its ids, MQTT login, signing key and the cloud key its models must verify against.</summary>
public sealed class EdgeDeviceIdentity(string deviceId, string federation, string mqttUserName, string mqttPassword, SigningKeyPair signingKey, VerificationKey cloudKey, string? broker = null) : IDisposable
{
    public string DeviceId { get; } = deviceId;
    public string Federation { get; } = federation;
    public string MqttUserName { get; } = mqttUserName;
    public string MqttPassword { get; } = mqttPassword;

    /// <summary>The device's Ed25519 key; its key id is the device id.</summary>
    public SigningKeyPair SigningKey { get; } = signingKey.KeyId == deviceId
        ? signingKey
        : throw new ArgumentException($"Signing key id '{signingKey.KeyId}' must equal the device id '{deviceId}'.", nameof(signingKey));

    public VerificationKey CloudKey { get; } = cloudKey;

    /// <summary>Broker address from the credential file, if any.</summary>
    public string? Broker { get; } = broker;

    /// <summary>Reads a credential file written by <c>fededge devices add</c>; the error names the file and what is wrong.</summary>
    public static EdgeDeviceIdentity Load(string path)
    {
        EdgeDeviceCredentials? file;
        try
        {
            file = JsonSerializer.Deserialize<EdgeDeviceCredentials>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Device credential file '{path}' is not valid: {e.Message}", e);
        }
        if (file is null)
            throw new InvalidDataException($"Device credential file '{path}' is empty.");
        return file.ToIdentity(path);
    }

    public void Dispose() => SigningKey.Dispose();
}

/// <summary>
/// The JSON of a device credential file (format version 1), as written by the cloud's <c>fededge devices add</c>:
/// raw 32-byte Ed25519 keys in base64. The agent reads it; it never writes it.
/// </summary>
public sealed record EdgeDeviceCredentials
{
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    [JsonPropertyName("deviceId")] public string? DeviceId { get; init; }
    [JsonPropertyName("federation")] public string? Federation { get; init; }
    [JsonPropertyName("mqttUserName")] public string? MqttUserName { get; init; }
    [JsonPropertyName("mqttPassword")] public string? MqttPassword { get; init; }
    [JsonPropertyName("signingPrivateKey")] public string? SigningPrivateKey { get; init; }
    [JsonPropertyName("signingPublicKey")] public string? SigningPublicKey { get; init; }
    [JsonPropertyName("cloudPublicKey")] public string? CloudPublicKey { get; init; }
    [JsonPropertyName("cloudKeyId")] public string CloudKeyId { get; init; } = "cloud";
    [JsonPropertyName("broker")] public string? Broker { get; init; }

    public EdgeDeviceIdentity ToIdentity(string source = "credentials")
    {
        if (Version != 1)
            throw new InvalidDataException($"{source}: credential format version {Version} is not supported (expected 1).");
        var deviceId = Required(DeviceId, "deviceId", source);
        var federation = Required(Federation, "federation", source);
        SigningKeyPair key;
        VerificationKey cloud;
        try
        {
            key = SigningKeyPair.FromPrivateKey(deviceId, Convert.FromBase64String(Required(SigningPrivateKey, "signingPrivateKey", source)));
            cloud = VerificationKey.FromBase64(CloudKeyId, Required(CloudPublicKey, "cloudPublicKey", source));
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            throw new InvalidDataException($"{source}: a key is not a base64 raw 32-byte Ed25519 key: {e.Message}", e);
        }
        if (SigningPublicKey is not null && SigningPublicKey != key.VerificationKey.ToBase64())
        {
            key.Dispose();
            throw new InvalidDataException($"{source}: signingPublicKey does not match signingPrivateKey.");
        }
        return new EdgeDeviceIdentity(deviceId, federation, MqttUserName ?? deviceId, Required(MqttPassword, "mqttPassword", source), key, cloud, Broker);
    }

    private static string Required(string? value, string field, string source) =>
        string.IsNullOrWhiteSpace(value) ? throw new InvalidDataException($"{source}: field '{field}' is missing.") : value;
}
