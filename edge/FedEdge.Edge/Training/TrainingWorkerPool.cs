using System.Collections.Concurrent;

namespace FedEdge.Edge.Training;

/// <summary>
/// A bounded set of dedicated threads for CPU-heavy local work (training, drift statistics), as a <see cref="TaskScheduler"/>
/// to hand to <see cref="EdgeAgent"/>. A simulation runs many agents in the process that hosts the cloud: on the .NET
/// thread pool their training would starve the Orleans silo's turns (and the pool's hill climbing would add threads that
/// compete with it). Here at most N trainings run at once, each on its own thread, and the thread pool stays the cloud's.
/// </summary>
public sealed class TrainingWorkerPool : TaskScheduler, IDisposable
{
    private readonly BlockingCollection<Task> _queue = [];
    private readonly Thread[] _threads;
    private int _disposed;

    /// <param name="threads">Worker threads (e.g. <see cref="Environment.ProcessorCount"/>).</param>
    /// <param name="name">Prefix of the threads' names (seen in debuggers and dumps).</param>
    public TrainingWorkerPool(int threads, string name = "fededge-train")
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        _threads = new Thread[threads];
        for (var i = 0; i < threads; i++)
        {
            // Background: a pool that was not disposed must not keep the process alive.
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"{name}-{i}" };
            _threads[i].Start();
        }
    }

    public override int MaximumConcurrencyLevel => _threads.Length;

    /// <summary>The pool's threads (tests check where work ran).</summary>
    public IReadOnlyList<Thread> Threads => _threads;

    /// <summary>Whether the calling thread is one of the pool's.</summary>
    public bool IsWorkerThread => Array.IndexOf(_threads, Thread.CurrentThread) >= 0;

    protected override void QueueTask(Task task) => _queue.Add(task);

    // Only a worker may run a task inline (e.g. one it waits on): any other thread would take training off the pool.
    protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) => IsWorkerThread && TryExecuteTask(task);

    protected override IEnumerable<Task> GetScheduledTasks() => _queue.ToArray();

    /// <summary>Stops taking work and waits for the queued and running tasks to finish.</summary>
    public void Dispose()
    {
        if (IsWorkerThread)
            throw new InvalidOperationException("A training worker cannot dispose its own pool (it would wait for itself).");
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _queue.CompleteAdding();
        foreach (var thread in _threads)
            thread.Join();
        _queue.Dispose();
    }

    private void Work()
    {
        foreach (var task in _queue.GetConsumingEnumerable())
            TryExecuteTask(task);
    }
}
