namespace FedEdge.Edge.Outbox;

/// <summary>Where the outbox lives and how much it may hold.</summary>
public sealed class OutboxOptions
{
    /// <summary>Directory of the outbox; created if missing. One file per pending update.</summary>
    public string Directory { get; set; } = "outbox";

    /// <summary>Most pending updates kept; new ones are refused beyond this.</summary>
    public int MaxItems { get; set; } = 256;

    /// <summary>Most bytes (sum of item files) kept; new ones are refused beyond this.</summary>
    public long MaxBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>fsync every item file and the directory after each change (turn off only in tests or on tmpfs).</summary>
    public bool Fsync { get; set; } = true;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(Directory))
            throw new ArgumentException("Outbox directory must be set.", nameof(Directory));
        if (MaxItems < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxItems), MaxItems, "Outbox MaxItems must be at least 1.");
        if (MaxBytes < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxBytes), MaxBytes, "Outbox MaxBytes must be at least 1.");
    }
}
