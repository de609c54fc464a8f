namespace FedEdge.Aggregation;

/// <summary>An update (or its weight) was refused before aggregation; <see cref="Reason"/> says why.</summary>
public sealed class InvalidUpdateException : ArgumentException
{
    public InvalidUpdateException(int? updateIndex, string reason)
        : base($"Update rejected: {reason}.")
    {
        UpdateIndex = updateIndex;
        Reason = reason;
    }

    /// <summary>The row of the batch that was refused, when the input was a batch.</summary>
    public int? UpdateIndex { get; }

    /// <summary>Why the update was refused (e.g. "coordinate 17 is NaN").</summary>
    public string Reason { get; }
}
