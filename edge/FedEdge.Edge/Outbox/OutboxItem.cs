namespace FedEdge.Edge.Outbox;

/// <summary>
/// One pending update in the <see cref="UpdateOutbox"/>.
/// </summary>
/// <param name="Sequence">Position in the outbox; items are sent in increasing order.</param>
/// <param name="UpdateId">The update's unique id (the cloud de-duplicates on it).</param>
/// <param name="EnqueuedAt">When the item was accepted.</param>
/// <param name="Payload">The bytes to publish (a signed update envelope).</param>
public sealed record OutboxItem(long Sequence, string UpdateId, DateTimeOffset EnqueuedAt, ReadOnlyMemory<byte> Payload)
{
    /// <summary>Size of the item's file on disk (header, payload and checksum).</summary>
    public long FileBytes { get; init; }
}

/// <summary>Thrown when the outbox is at its item or byte bound; nothing already accepted is affected.</summary>
public sealed class OutboxFullException(string message) : InvalidOperationException(message);
