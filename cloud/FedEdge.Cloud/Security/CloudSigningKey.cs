using FedEdge.Protocol;

namespace FedEdge.Cloud.Security;

/// <summary>
/// The cloud's Ed25519 key pair, which signs every published model. Generated on first start into the data
/// directory (<c>cloud-signing.key</c>, mode 0600; the public key also in <c>cloud-signing.key.pub</c>) and
/// handed to devices in their credential files.
/// </summary>
public sealed class CloudSigningKey
{
    public CloudSigningKey(byte[] privateKey, byte[] publicKey)
    {
        PrivateKey = privateKey;
        PublicKey = publicKey;
    }

    /// <summary>Raw 32-byte Ed25519 private key.</summary>
    public byte[] PrivateKey { get; }

    /// <summary>Raw 32-byte Ed25519 public key.</summary>
    public byte[] PublicKey { get; }

    public static CloudSigningKey LoadOrCreate(CloudDataDirectory data)
    {
        var (privateKey, publicKey) = Ed25519KeyFile.LoadOrCreate(data.CloudSigningKey);
        return new CloudSigningKey(privateKey, publicKey);
    }

    /// <summary>Key id under which devices register the cloud's public key (named in every announcement).</summary>
    public const string KeyId = "cloud";

    /// <summary>The key as the protocol library's signer (the caller disposes it).</summary>
    public SigningKeyPair ToSigningKeyPair() => SigningKeyPair.FromPrivateKey(KeyId, PrivateKey);
}
