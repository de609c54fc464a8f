using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using NSec.Cryptography;

namespace FedEdge.Protocol;

/// <summary>
/// An Ed25519 private key with its key id (the device id for devices, a key name for the cloud).
/// Text form for credential files:
/// <code>
/// -----BEGIN FEDEDGE ED25519 PRIVATE KEY-----
/// Key-Id: device-0001
/// &lt;base64 of the 32-byte private seed&gt;
/// -----END FEDEDGE ED25519 PRIVATE KEY-----
/// </code>
/// </summary>
public sealed class SigningKeyPair : IDisposable
{
    internal const string PrivateLabel = "FEDEDGE ED25519 PRIVATE KEY";
    private static readonly SignatureAlgorithm Algorithm = SignatureAlgorithm.Ed25519;
    private readonly Key _key;

    private SigningKeyPair(string keyId, Key key)
    {
        KeyTextFormat.EnsureKeyId(keyId);
        KeyId = keyId;
        _key = key;
        VerificationKey = new VerificationKey(keyId, key.PublicKey.Export(KeyBlobFormat.RawPublicKey));
    }

    public string KeyId { get; }

    /// <summary>The matching public key (raw 32 bytes inside).</summary>
    public VerificationKey VerificationKey { get; }

    public static SigningKeyPair Generate(string keyId) =>
        new(keyId, Key.Create(Algorithm, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport }));

    /// <summary>From a raw 32-byte Ed25519 private seed.</summary>
    public static SigningKeyPair FromPrivateKey(string keyId, ReadOnlySpan<byte> privateKey)
    {
        if (privateKey.Length != 32)
        {
            throw new ArgumentException($"An Ed25519 private key has 32 bytes, not {privateKey.Length}.", nameof(privateKey));
        }
        Key key = Key.Import(Algorithm, privateKey, KeyBlobFormat.RawPrivateKey, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport });
        return new SigningKeyPair(keyId, key);
    }

    /// <summary>The raw 32-byte private seed. Handle with care.</summary>
    public byte[] ExportPrivateKey() => _key.Export(KeyBlobFormat.RawPrivateKey);

    public string ExportPrivateText() => KeyTextFormat.Write(PrivateLabel, KeyId, ExportPrivateKey());

    /// <exception cref="FormatException">The text is not a FedEdge private key.</exception>
    public static SigningKeyPair ImportPrivateText(string text)
    {
        (string keyId, byte[] raw) = KeyTextFormat.Read(text, PrivateLabel, 32);
        return FromPrivateKey(keyId, raw);
    }

    internal void Sign(ReadOnlySpan<byte> data, Span<byte> signature) => Algorithm.Sign(_key, data, signature);

    public void Dispose() => _key.Dispose();
}

/// <summary>An Ed25519 public key (raw 32 bytes) and the key id it is registered under.</summary>
public sealed class VerificationKey
{
    internal const string PublicLabel = "FEDEDGE ED25519 PUBLIC KEY";
    private readonly byte[] _raw;
    private readonly PublicKey _key;

    public VerificationKey(string keyId, ReadOnlySpan<byte> rawPublicKey)
    {
        KeyTextFormat.EnsureKeyId(keyId);
        if (rawPublicKey.Length != 32 || !PublicKey.TryImport(SignatureAlgorithm.Ed25519, rawPublicKey, KeyBlobFormat.RawPublicKey, out PublicKey? key) || key is null)
        {
            throw new ArgumentException($"Not a valid raw 32-byte Ed25519 public key for '{keyId}'.", nameof(rawPublicKey));
        }
        KeyId = keyId;
        _raw = rawPublicKey.ToArray();
        _key = key;
    }

    public string KeyId { get; }

    public ReadOnlySpan<byte> RawPublicKey => _raw;

    public string ToBase64() => Convert.ToBase64String(_raw);

    public static VerificationKey FromBase64(string keyId, string base64) => new(keyId, Convert.FromBase64String(base64));

    public string ExportText() => KeyTextFormat.Write(PublicLabel, KeyId, _raw);

    /// <exception cref="FormatException">The text is not a FedEdge public key.</exception>
    public static VerificationKey ImportText(string text)
    {
        (string keyId, byte[] raw) = KeyTextFormat.Read(text, PublicLabel, 32);
        return new VerificationKey(keyId, raw);
    }

    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) =>
        signature.Length == SignedMessage.SignatureLength && SignatureAlgorithm.Ed25519.Verify(_key, data, signature);
}

/// <summary>Looks up the public key of a signer (device id or cloud key id).</summary>
public interface IVerificationKeys
{
    bool TryGet(string keyId, [NotNullWhen(true)] out VerificationKey? key);
}

/// <summary>Thread-safe in-memory key directory (the cloud loads it from its device registry).</summary>
public sealed class VerificationKeyRing : IVerificationKeys
{
    private readonly ConcurrentDictionary<string, VerificationKey> _keys = new(StringComparer.Ordinal);

    public VerificationKeyRing(params IEnumerable<VerificationKey> keys)
    {
        foreach (VerificationKey key in keys)
        {
            Add(key);
        }
    }

    public int Count => _keys.Count;

    public void Add(VerificationKey key) => _keys[key.KeyId] = key;

    public bool Remove(string keyId) => _keys.TryRemove(keyId, out _);

    public bool TryGet(string keyId, [NotNullWhen(true)] out VerificationKey? key) => _keys.TryGetValue(keyId, out key);
}

internal static class KeyTextFormat
{
    public static void EnsureKeyId(string keyId)
    {
        if (string.IsNullOrEmpty(keyId) || keyId.Length > 128 || keyId.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c is '/' or '+' or '#'))
        {
            throw new ArgumentException($"Key id '{keyId}' must be 1-128 characters without whitespace, '/', '+' or '#'.", nameof(keyId));
        }
    }

    public static string Write(string label, string keyId, byte[] raw) =>
        $"-----BEGIN {label}-----\nKey-Id: {keyId}\n{Convert.ToBase64String(raw)}\n-----END {label}-----\n";

    public static (string KeyId, byte[] Raw) Read(string text, string label, int length)
    {
        string[] lines = text.Replace("\r", "", StringComparison.Ordinal).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int begin = Array.IndexOf(lines, $"-----BEGIN {label}-----");
        int end = Array.IndexOf(lines, $"-----END {label}-----");
        if (begin < 0 || end != begin + 3 || !lines[begin + 1].StartsWith("Key-Id:", StringComparison.Ordinal))
        {
            throw new FormatException($"Expected a '{label}' block with a Key-Id line and one base64 line.");
        }
        string keyId = lines[begin + 1]["Key-Id:".Length..].Trim();
        byte[] raw;
        try
        {
            raw = Convert.FromBase64String(lines[begin + 2]);
        }
        catch (FormatException e)
        {
            throw new FormatException($"The '{label}' of '{keyId}' is not valid base64.", e);
        }
        if (raw.Length != length)
        {
            throw new FormatException($"The '{label}' of '{keyId}' has {raw.Length} bytes, not {length}.");
        }
        return (keyId, raw);
    }
}
