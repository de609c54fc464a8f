using FedEdge.Edge.Training;

namespace FedEdge.Edge.Tests.Training;

public sealed class TrainingWorkerPoolTests
{
    [Fact]
    public async Task Work_runs_only_on_the_pools_threads_and_at_most_N_at_once()
    {
        using var pool = new TrainingWorkerPool(2, "test-train");
        var running = 0;
        var mostAtOnce = 0;
        var tasks = Enumerable.Range(0, 8).Select(_ => Task.Factory.StartNew(() =>
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref mostAtOnce, now);
            // Some CPU work so that tasks overlap if the pool let them.
            var sum = 0.0;
            for (var i = 0; i < 200_000; i++) sum += Math.Sqrt(i);
            Interlocked.Decrement(ref running);
            return (Thread.CurrentThread, pool.IsWorkerThread, sum);
        }, CancellationToken.None, TaskCreationOptions.DenyChildAttach, pool)).ToArray();
        var ran = await Task.WhenAll(tasks);

        Assert.All(ran, r => Assert.Contains(r.Item1, pool.Threads));
        Assert.All(ran, r => Assert.True(r.IsWorkerThread));
        Assert.InRange(mostAtOnce, 1, 2);
        Assert.Equal(2, pool.MaximumConcurrencyLevel);
        Assert.False(pool.IsWorkerThread); // the test's own thread is not a worker
    }

    [Fact]
    public async Task Dispose_finishes_queued_work_and_refuses_more()
    {
        var pool = new TrainingWorkerPool(1);
        var queued = Enumerable.Range(0, 4).Select(i => Task.Factory.StartNew(() => i * 2, CancellationToken.None, TaskCreationOptions.None, pool)).ToArray();
        pool.Dispose();
        var results = await Task.WhenAll(queued);
        Assert.Equal(new[] { 0, 2, 4, 6 }, results);
        // Queueing on a disposed pool fails at once (StartNew wraps the scheduler's error).
        Assert.Throws<TaskSchedulerException>(() => { _ = Task.Factory.StartNew(() => 0, CancellationToken.None, TaskCreationOptions.None, pool); });
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current) return;
            current = seen;
        }
    }
}
