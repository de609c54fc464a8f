using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace FedEdge.Cloud.Security;

/// <summary>
/// Salted PBKDF2-HMAC-SHA512 password hashes in Mosquitto's <c>$7$</c> format
/// (<c>$7$iterations$base64(salt, 12 bytes)$base64(hash, 64 bytes)</c>, what <c>mosquitto_passwd</c>
/// writes), so the registry's hashes go into a Mosquitto password file unchanged and the embedded
/// broker checks the same strings. Only hashes are stored, never passwords.
/// </summary>
public static class MosquittoPasswordHash
{
    private const int SaltBytes = 12;
    private const int HashBytes = 64;

    /// <summary>Iterations for new hashes. mosquitto_passwd uses 101; we use more, which Mosquitto 2 accepts.</summary>
    public const int DefaultIterations = 20_000;

    public static string Create(string password, int iterations = DefaultIterations)
    {
        ArgumentException.ThrowIfNullOrEmpty(password);
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA512, HashBytes);
        return $"$7${iterations.ToString(CultureInfo.InvariantCulture)}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    /// <summary>Constant-time check of <paramref name="password"/> against a <c>$7$</c> hash; false for malformed hashes.</summary>
    public static bool Verify(string password, string encoded)
    {
        if (password is null || encoded is null) return false;
        var parts = encoded.Split('$');
        // "", "7", iterations, salt, hash
        if (parts.Length != 5 || parts[0].Length != 0 || parts[1] != "7") return false;
        if (!int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var iterations) || iterations < 1 || iterations > 10_000_000) return false;
        byte[] salt, expected;
        try
        {
            salt = Convert.FromBase64String(parts[3]);
            expected = Convert.FromBase64String(parts[4]);
        }
        catch (FormatException)
        {
            return false;
        }
        if (salt.Length == 0 || expected.Length == 0) return false;
        var actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA512, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    /// <summary>A random password for a new device or service identity (192 bits, URL-safe).</summary>
    public static string NewPassword() =>
        Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_');
}
