namespace FedEdge.Testing;

/// <summary>
/// Waits for a positive signal with a deadline, polling every 25 ms. Tests wait for what must happen (or for a sentinel
/// sent after what must not happen) instead of sleeping a fixed time.
/// </summary>
public static class Eventually
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test naming <paramref name="what"/> otherwise.</summary>
    public static Task HoldsAsync(Func<bool> condition, string what, double timeoutSeconds = 20) =>
        HoldsAsync(() => Task.FromResult(condition()), what, TimeSpan.FromSeconds(timeoutSeconds));

    /// <summary>As above, with the description of what is awaited computed only on timeout.</summary>
    public static Task HoldsAsync(Func<bool> condition, Func<string> what, double timeoutSeconds = 20) =>
        HoldsAsync(() => Task.FromResult(condition()), "", TimeSpan.FromSeconds(timeoutSeconds), () => Task.FromResult(what()));

    /// <summary>
    /// Polls the asynchronous <paramref name="condition"/> until it holds; on timeout fails naming <paramref name="what"/>,
    /// with <paramref name="describe"/>'s account of the state (computed only then).
    /// </summary>
    public static async Task HoldsAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null, Func<Task<string>>? describe = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var deadline = DateTime.UtcNow + limit;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"Timed out after {limit.TotalSeconds:0.#} s waiting for: {what}{(describe is null ? "" : "; " + await describe())}");
            await Task.Delay(25);
        }
    }
}
