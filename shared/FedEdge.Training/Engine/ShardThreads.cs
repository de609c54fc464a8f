using System.Runtime.ExceptionServices;

namespace FedEdge.Training.Engine;

/// <summary>
/// Runs <c>work(0 … count − 1)</c> once each per <see cref="Run"/>: index 0 on the calling thread, index i on dedicated
/// worker thread i, which live as long as this object. A training step hands work over every millisecond or so, so the
/// workers spin briefly before they block (a blocked worker costs a wake-up per step). Each index is claimed before it
/// runs, and the caller claims and runs every index whose worker has not started by the time its own is done: on a
/// machine whose other cores are busy a run then costs what one thread would, instead of waiting for a descheduled
/// worker. Nothing is allocated per run. Not reentrant: one <see cref="Run"/> at a time.
/// </summary>
internal sealed class ShardThreads : IDisposable
{
    /// <summary>SpinWait rounds a worker polls for the next run before it blocks (well under a millisecond).</summary>
    private const int SpinIterations = 2000;

    private readonly Action<int> _work;
    private readonly Worker[] _workers;
    private readonly int[] _claimed; // 1 once some thread has taken index i in the current run
    private readonly Exception?[] _errors;
    private int _generation;
    private int _pending;
    private volatile bool _stopping;

    public ShardThreads(int count, Action<int> work, string name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _work = work;
        _claimed = new int[count];
        Array.Fill(_claimed, 1);
        _errors = new Exception?[count];
        _workers = new Worker[count - 1];
        for (var i = 0; i < _workers.Length; i++)
        {
            var worker = new Worker(i + 1);
            _workers[i] = worker;
            worker.Thread = new Thread(() => Loop(worker)) { IsBackground = true, Name = $"{name} {i + 1}" };
            worker.Thread.Start();
        }
    }

    public int Count => _claimed.Length;

    /// <summary>Workers blocked waiting for the next run (they stopped spinning).</summary>
    public int BlockedWorkers => _workers.Count(w => Volatile.Read(ref w.Sleeping) == 1);

    /// <summary>Runs every index once and returns when all are done; rethrows the first failure.</summary>
    public void Run()
    {
        ObjectDisposedException.ThrowIf(_stopping, this);

        // Order matters for a worker still waking up from the previous run: every index is claimed until the counter is
        // set, so such a worker can only take an index of this run, and its decrement is counted.
        Array.Clear(_errors);
        Volatile.Write(ref _pending, _claimed.Length);
        for (var i = 0; i < _claimed.Length; i++)
        {
            Volatile.Write(ref _claimed[i], 0);
        }

        Interlocked.Increment(ref _generation);
        foreach (var w in _workers)
        {
            if (Interlocked.Exchange(ref w.Sleeping, 0) == 1)
            {
                w.Wake.Release();
            }
        }

        for (var i = 0; i < _claimed.Length; i++)
        {
            TryRun(i);
        }

        var spinner = default(SpinWait);
        while (Volatile.Read(ref _pending) != 0)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }

        foreach (var error in _errors)
        {
            if (error is not null)
            {
                ExceptionDispatchInfo.Capture(error).Throw();
            }
        }
    }

    /// <summary>Runs index <paramref name="i"/> unless another thread has claimed it in this run.</summary>
    private void TryRun(int i)
    {
        if (Interlocked.CompareExchange(ref _claimed[i], 1, 0) != 0)
        {
            return;
        }

        try
        {
            _work(i);
        }
        catch (Exception e)
        {
            _errors[i] = e;
        }

        Interlocked.Decrement(ref _pending);
    }

    private void Loop(Worker w)
    {
        var seen = 0; // the generation before the first Run, which may come before this thread starts
        while (true)
        {
            var spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_stopping)
            {
                if (spins++ < SpinIterations)
                {
                    Thread.SpinWait(20);
                    continue;
                }

                // Announce the sleep, then look again: Run either sees the flag and releases the semaphore, or
                // bumped the generation before the flag was set (then nobody releases and the worker must not wait).
                Interlocked.Exchange(ref w.Sleeping, 1);
                if (Volatile.Read(ref _generation) != seen || _stopping)
                {
                    if (Interlocked.Exchange(ref w.Sleeping, 0) == 0)
                    {
                        w.Wake.Wait(); // Run took the flag and released: consume that release
                    }

                    break;
                }

                w.Wake.Wait();
            }

            if (_stopping)
            {
                return;
            }

            seen = Volatile.Read(ref _generation);
            TryRun(w.Index);
        }
    }

    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        foreach (var w in _workers)
        {
            w.Wake.Release();
        }

        foreach (var w in _workers)
        {
            w.Thread!.Join();
            w.Wake.Dispose();
        }
    }

    private sealed class Worker(int index)
    {
        public readonly int Index = index;
        public readonly SemaphoreSlim Wake = new(0);
        public int Sleeping;
        public Thread? Thread;
    }
}
