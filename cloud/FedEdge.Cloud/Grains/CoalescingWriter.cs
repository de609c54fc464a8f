namespace FedEdge.Cloud.Grains;

/// <summary>
/// Coalesces writes of one piece of state (a grain's persistent state): a request made while a write is in
/// flight is served by one follow-up write that starts after it, shared by every request made meanwhile. Each
/// caller's task completes after a write that <em>started after its request</em> completed, so the changes the
/// caller made before asking are durable, while N concurrent requests cost at most two writes instead of N.
/// (Orleans' <c>IPersistentState</c> must not be written concurrently: each write needs the previous ETag.)
/// </summary>
public sealed class CoalescingWriter(Func<Task> write)
{
    private readonly Lock _lock = new();
    private Task _last = Task.CompletedTask;
    private Task? _queued; // a write that has not started yet: new requests join it

    /// <summary>Writes, or joins the write queued behind the one in flight.</summary>
    public Task WriteAsync()
    {
        lock (_lock)
        {
            if (_queued is { } queued) return queued;
            if (_last.IsCompleted) return _last = write();
            return _queued = _last = WriteAfterAsync(_last);
        }
    }

    private async Task WriteAfterAsync(Task previous)
    {
        // Yield first so that WriteAsync has published this task as the queued one before it can start.
        await Task.Yield();
        try
        {
            await previous;
        }
        catch
        {
            // The previous write's callers get its error; this write is a fresh attempt with the newer state.
        }
        lock (_lock) _queued = null;
        await write();
    }
}
