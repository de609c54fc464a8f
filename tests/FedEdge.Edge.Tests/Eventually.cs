namespace FedEdge.Edge.Tests;

internal static class Eventually
{
    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test with <paramref name="what"/> otherwise.</summary>
    public static Task HoldsAsync(Func<bool> condition, string what, double timeoutSeconds = 20) =>
        HoldsAsync(condition, () => what, timeoutSeconds);

    public static async Task HoldsAsync(Func<bool> condition, Func<string> what, double timeoutSeconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"Timed out after {timeoutSeconds} s waiting for: {what()}");
            await Task.Delay(25);
        }
    }
}
