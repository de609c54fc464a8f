using System.Buffers;

namespace FedEdge.Cloud.Abstractions;

/// <summary>
/// Device and federation ids become MQTT topic levels, file names and SQL keys, so they are
/// restricted to a safe alphabet: letters, digits, '-', '_', '.', 1–64 characters, not starting with '.'.
/// </summary>
public static class Identifiers
{
    private static readonly SearchValues<char> Allowed =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");

    public static bool IsValid(string? id) =>
        !string.IsNullOrEmpty(id) && id.Length <= 64 && id[0] != '.' && !id.AsSpan().ContainsAnyExcept(Allowed);

    /// <summary>Throws <see cref="ArgumentException"/> naming <paramref name="what"/> when the id is not valid.</summary>
    public static string Require(string? id, string what) =>
        IsValid(id) ? id! : throw new ArgumentException(
            $"{what} '{id}' is not valid: use 1–64 of [A-Za-z0-9-_.], not starting with '.'", what);
}
