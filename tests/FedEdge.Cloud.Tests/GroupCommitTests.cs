using FedEdge.Cloud.Grains;
using FedEdge.Cloud.Storage;

namespace FedEdge.Cloud.Tests;

public sealed class GroupCommitTests
{
    [Fact]
    public async Task ConcurrentItemsShareBatches_EachGetsItsOwnOutcome()
    {
        var batchSizes = new List<int>();
        using var queue = new GroupCommitQueue<int, int>(items =>
        {
            Thread.Sleep(5); // an fsync
            lock (batchSizes) batchSizes.Add(items.Count);
            return items.Select(i => i % 7 == 0
                ? GroupCommitQueue<int, int>.Outcome.Failure(new InvalidOperationException($"item {i}"))
                : GroupCommitQueue<int, int>.Outcome.Success(i * 10)).ToArray();
        });
        var tasks = Enumerable.Range(1, 300).Select(i => (Item: i, Task: Task.Run(() => queue.EnqueueAsync(i)))).ToArray();
        foreach (var (item, task) in tasks)
        {
            if (item % 7 == 0) Assert.Equal($"item {item}", (await Assert.ThrowsAsync<InvalidOperationException>(() => task)).Message);
            else Assert.Equal(item * 10, await task);
        }
        Assert.Equal(300, batchSizes.Sum());
        Assert.True(batchSizes.Count < 300, $"{batchSizes.Count} batches for 300 items: nothing was grouped");
        Assert.Equal(300, queue.Items);
        Assert.Equal(batchSizes.Count, queue.Batches);
    }

    [Fact]
    public async Task AFailedCommitFailsItsWholeBatch_AndTheQueueKeepsWorking()
    {
        var fail = true;
        using var queue = new GroupCommitQueue<string, string>(items => fail
            ? throw new IOException("disk full")
            : items.Select(GroupCommitQueue<string, string>.Outcome.Success).ToArray());
        Assert.Equal("disk full", (await Assert.ThrowsAsync<IOException>(() => queue.EnqueueAsync("a"))).Message);
        fail = false;
        Assert.Equal("b", await queue.EnqueueAsync("b"));
    }

    [Fact]
    public async Task CoalescedWritesCoverEveryRequestMadeBeforeThem_WithAtMostOneWriteQueued()
    {
        var value = 0;
        var written = 0; // the value the last completed write captured
        var writes = 0;
        var gate = new TaskCompletionSource();
        var writer = new CoalescingWriter(async () =>
        {
            var captured = Volatile.Read(ref value);
            Interlocked.Increment(ref writes);
            await gate.Task;
            await Task.Delay(5);
            InterlockedMax(ref written, captured);
        });

        var first = writer.WriteAsync(); // in flight, blocked on the gate
        var waiting = new List<(int Value, Task Done)>();
        for (var i = 1; i <= 50; i++)
        {
            Interlocked.Exchange(ref value, i);
            waiting.Add((i, writer.WriteAsync()));
        }
        var queued = waiting[0].Done;
        Assert.All(waiting, w => Assert.Same(queued, w.Done)); // all 50 joined one queued write
        gate.SetResult();
        await first;
        foreach (var (v, done) in waiting)
        {
            await done;
            Assert.True(Volatile.Read(ref written) >= v, $"request after value {v} completed before a write covering it");
        }
        Assert.Equal(2, writes);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current) { }
    }
}
