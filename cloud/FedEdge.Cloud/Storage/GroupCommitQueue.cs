using System.Threading.Channels;

namespace FedEdge.Cloud.Storage;

/// <summary>
/// Group commit: writes from many callers that arrive while the previous batch is being made durable are
/// committed together by one writer, so N concurrent writers pay for one transaction and one fsync instead of N.
/// Each caller's task completes only after its batch was committed (durable), with its own outcome: the commit
/// function returns one result per item, or throws to fail the whole batch.
/// <para>
/// Batching needs no timer: while a commit is in flight the next batch fills up, so the batch size adapts to
/// the load (one item when idle, up to <c>maxBatch</c> under load) and an idle write is never delayed.
/// </para>
/// </summary>
/// <typeparam name="TItem">One write.</typeparam>
/// <typeparam name="TResult">Its outcome (for example the new ETag).</typeparam>
public sealed class GroupCommitQueue<TItem, TResult> : IDisposable
{
    private readonly Channel<(TItem Item, TaskCompletionSource<TResult> Done)> _queue =
        Channel.CreateUnbounded<(TItem, TaskCompletionSource<TResult>)>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Func<IReadOnlyList<TItem>, IReadOnlyList<Outcome>> _commit;
    private readonly int _maxBatch;
    private readonly Thread _writer;
    private long _batches;
    private long _items;

    /// <summary>The outcome of one item: its result, or the exception its caller gets.</summary>
    public readonly record struct Outcome(TResult? Result, Exception? Error)
    {
        public static Outcome Success(TResult result) => new(result, null);

        public static Outcome Failure(Exception error) => new(default, error);
    }

    /// <param name="commit">Makes a batch durable (one transaction) and returns one outcome per item, in order;
    /// runs on the queue's own writer thread, one batch at a time.</param>
    /// <param name="maxBatch">Most items per commit.</param>
    /// <param name="name">Name of the writer thread.</param>
    public GroupCommitQueue(Func<IReadOnlyList<TItem>, IReadOnlyList<Outcome>> commit, int maxBatch = 256, string name = "group-commit")
    {
        ArgumentNullException.ThrowIfNull(commit);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        _commit = commit;
        _maxBatch = maxBatch;
        // A dedicated thread: commits block on fsync, which must not starve the thread pool that feeds the queue.
        _writer = new Thread(Run) { IsBackground = true, Name = name };
        _writer.Start();
    }

    /// <summary>Batches committed so far.</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Items committed so far (successfully or not).</summary>
    public long Items => Interlocked.Read(ref _items);

    /// <summary>Queues a write; completes once the batch holding it is durable, or fails with its error.</summary>
    public Task<TResult> EnqueueAsync(TItem item)
    {
        var done = new TaskCompletionSource<TResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_queue.Writer.TryWrite((item, done)))
            done.SetException(new ObjectDisposedException(nameof(GroupCommitQueue<TItem, TResult>), "the storage was closed"));
        return done.Task;
    }

    private void Run()
    {
        var batch = new List<(TItem Item, TaskCompletionSource<TResult> Done)>(_maxBatch);
        var items = new List<TItem>(_maxBatch);
        while (_queue.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            items.Clear();
            while (batch.Count < _maxBatch && _queue.Reader.TryRead(out var next))
            {
                batch.Add(next);
                items.Add(next.Item);
            }
            if (batch.Count == 0) continue;
            var counted = false;
            try
            {
                var outcomes = _commit(items);
                if (outcomes.Count != batch.Count)
                    throw new InvalidOperationException($"the commit returned {outcomes.Count} outcomes for {batch.Count} items");
                // Counted before the writers are released, so a writer that awaited its write sees it counted.
                Count(batch.Count);
                counted = true;
                for (var i = 0; i < batch.Count; i++)
                {
                    if (outcomes[i].Error is { } error) batch[i].Done.SetException(error);
                    else batch[i].Done.SetResult(outcomes[i].Result!);
                }
            }
            catch (Exception e)
            {
                if (!counted) Count(batch.Count);
                foreach (var (_, done) in batch) done.TrySetException(e);
            }
        }
    }

    private void Count(int items)
    {
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _items, items);
    }

    /// <summary>Stops taking writes, commits what is queued and waits for the writer to finish.</summary>
    public void Dispose()
    {
        _queue.Writer.TryComplete();
        if (Thread.CurrentThread != _writer) _writer.Join();
    }
}
