using NSec.Cryptography;

namespace FedEdge.Cloud.Security;

/// <summary>Ed25519 key pairs as raw 32-byte keys: created with NSec, stored base64 in 0600 files.</summary>
public static class Ed25519KeyFile
{
    /// <summary>Creates a new key pair and returns (raw private key, raw public key).</summary>
    public static (byte[] PrivateKey, byte[] PublicKey) Create()
    {
        using var key = Key.Create(SignatureAlgorithm.Ed25519,
            new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return (key.Export(KeyBlobFormat.RawPrivateKey), key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    /// <summary>The public key of a raw private key.</summary>
    public static byte[] PublicKeyOf(ReadOnlySpan<byte> privateKey)
    {
        using var key = Key.Import(SignatureAlgorithm.Ed25519, privateKey, KeyBlobFormat.RawPrivateKey);
        return key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
    }

    /// <summary>
    /// Loads the private key at <paramref name="path"/>, creating it (and <c>path.pub</c>) on first use.
    /// Returns (raw private key, raw public key).
    /// </summary>
    public static (byte[] PrivateKey, byte[] PublicKey) LoadOrCreate(string path)
    {
        if (File.Exists(path))
        {
            byte[] raw;
            try
            {
                raw = Convert.FromBase64String(File.ReadAllText(path).Trim());
            }
            catch (FormatException e)
            {
                throw new InvalidDataException($"Key file '{path}' is not base64", e);
            }
            if (raw.Length != 32) throw new InvalidDataException($"Key file '{path}' holds {raw.Length} bytes, expected a raw 32-byte Ed25519 private key");
            return (raw, PublicKeyOf(raw));
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var (privateKey, publicKey) = Create();
        SecretFile.WriteAllText(path, Convert.ToBase64String(privateKey) + "\n");
        File.WriteAllText(path + ".pub", Convert.ToBase64String(publicKey) + "\n");
        return (privateKey, publicKey);
    }
}
