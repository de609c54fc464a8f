using System.CommandLine;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;
using FedEdge.Aggregation;
using FedEdge.Aggregation.PreAggregation;
using FedEdge.Aggregation.Rules;
using FedEdge.Data;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge bench aggregate`: times every rule on an n×d float32 batch and compares it with the memory-read
/// bandwidth measured in the same run; checks that the streaming paths allocate nothing per update.
/// </summary>
internal static class BenchAggregateCommand
{
    public static Command Create()
    {
        var n = new Option<int>("--n") { Description = "Updates per batch.", DefaultValueFactory = _ => 50 };
        var d = new Option<int>("--d") { Description = "Coordinates per update.", DefaultValueFactory = _ => 1_000_000 };
        var f = new Option<int>("--f") { Description = "f for the robust rules.", DefaultValueFactory = _ => 5 };
        var reps = new Option<int>("--reps") { Description = "Timed repetitions per rule (best is reported).", DefaultValueFactory = _ => 3 };
        var input = new Option<FileInfo?>("--in") { Description = "Use this n×d float32 .npy instead of random data." };
        var save = new Option<FileInfo?>("--save") { Description = "Write the random input to this .npy (for bench/aggregate_peer_numpy.py)." };
        var only = new Option<string[]>("--rule")
        {
            Description = "Time only the rules whose name starts with this (repeatable); default all.",
            AllowMultipleArgumentsPerToken = true,
        };
        var command = new Command("aggregate", "Time the aggregation rules against the machine's memory bandwidth.")
        {
            n, d, f, reps, input, save, only,
        };
        command.SetAction(parse => Run(parse.GetValue(n), parse.GetValue(d), parse.GetValue(f), Math.Max(1, parse.GetValue(reps)),
            parse.GetValue(input), parse.GetValue(save), parse.GetValue(only) ?? []));
        return command;
    }

    private static int Run(int n, int d, int f, int reps, FileInfo? input, FileInfo? save, string[] only)
    {
        UpdateBatch batch;
        if (input is not null)
        {
            batch = AggregateCommand.ReadUpdates(input, null);
            (n, d) = (batch.Count, batch.Dimension);
        }
        else
        {
            batch = new UpdateBatch(RandomUpdates(n, d), n, d);
        }

        if (save is not null)
        {
            NpyArray.Write<float>(save.FullName, batch.Data.Span, [n, d]);
            Console.WriteLine($"input written to {save.FullName}");
        }

        double inputBytes = 4.0 * n * d;
        Console.WriteLine($"n = {n}, d = {d}, f = {f}, input {inputBytes / 1e6:F0} MB, {Environment.ProcessorCount} cores, " +
                          $"Vector<float> {Vector<float>.Count * 32}-bit, Vector512 {(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "yes" : "no")}, " +
                          $"{RuntimeInformation.ProcessArchitecture}");
        double bandwidth = MeasureReadBandwidth(batch.Data, reps + 2);
        Console.WriteLine($"memory read bandwidth (parallel sum over the input): {bandwidth / 1e9:F2} GB/s");

        UpdateValidator.ThrowIfInvalid(batch); // warm-up (the batch's own check may already have run when read)
        var validation = Stopwatch.StartNew();
        UpdateValidator.ThrowIfInvalid(batch);
        Console.WriteLine($"validation (finite check, once per batch): {validation.Elapsed.TotalMilliseconds:F1} ms, " +
                          $"{inputBytes / validation.Elapsed.TotalSeconds / 1e9:F2} GB/s");
        Console.WriteLine();
        Console.WriteLine($"{"rule",-26} {"time ms",10} {"GB/s",8} {"% of bw",8} {"cpu ms",8} {"alloc KB",9}");

        var result = new float[d];
        void Report(string name, double seconds, double bytes)
        {
            double rate = bytes / seconds;
            Console.WriteLine($"{name,-26} {seconds * 1e3,10:F1} {rate / 1e9,8:F2} {100 * rate / bandwidth,7:F0}% {_bestCpu * 1e3,8:F1} {_bestAllocated / 1024.0,9:F1}");
        }

        (string Name, IAggregationRule Rule)[] rules =
        [
            ("mean", new WeightedMeanRule()),
            ("median", new CoordinateWiseMedianRule()),
            ($"trimmed-mean (b = {f})", new TrimmedMeanRule(f)),
            ($"krum (f = {f})", new KrumRule(f)),
            ($"multi-krum (m = n - f)", new MultiKrumRule(f, n - f)),
            ("geomed (T = 8)", new GeometricMedianRule(f)),
            ("centered-clip (L = 3)", new CenteredClippingRule(f)),
            ("bucketing(2)+median", new PreAggregatedRule(new BucketingPreAggregator(2), new CoordinateWiseMedianRule())),
            ("nnm+trimmed-mean", new PreAggregatedRule(new NearestNeighborMixingPreAggregator(f), new TrimmedMeanRule(f))),
        ];
        bool Selected(string name) => only.Length == 0 || only.Any(prefix => name.StartsWith(prefix, StringComparison.Ordinal));
        foreach (var (name, rule) in rules)
        {
            if (!Selected(name))
            {
                continue;
            }

            if (rule is PreAggregatedRule { PreAggregator: NearestNeighborMixingPreAggregator } && (long)n * n * d > 5_000_000_000L)
            {
                continue;
            }

            Report(name, Best(reps, () => rule.Aggregate(batch, result)), inputBytes);
        }

        // Streaming mean: one update at a time on the calling thread, as an ingestion grain does.
        var mean = new WeightedMeanAccumulator(d);
        long meanAllocated = 0;
        double meanSeconds = Best(reps, () =>
        {
            mean.Reset();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < n; i++)
            {
                mean.Add(batch.Row(i), 1f + i);
            }

            meanAllocated = GC.GetAllocatedBytesForCurrentThread() - before;
            mean.Complete(result);
        });
        Report("mean, streaming (1 core)", meanSeconds, inputBytes);

        // Sign vote on packed bits: n·d/8 bytes of input.
        int packedLength = (d + 7) / 8;
        var packed = new byte[(long)n * packedLength];
        for (int i = 0; i < n; i++)
        {
            SignMajorityVoteAccumulator.PackSigns(batch.Row(i), packed.AsSpan(i * packedLength, packedLength));
        }

        var vote = new SignMajorityVoteAccumulator(d);
        long voteAllocated = 0;
        double addSeconds = double.MaxValue;
        double voteSeconds = Best(reps + 2, () =>
        {
            vote.Reset();
            var clock = Stopwatch.StartNew();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < n; i++)
            {
                vote.AddPacked(packed.AsSpan(i * packedLength, packedLength));
            }

            voteAllocated = GC.GetAllocatedBytesForCurrentThread() - before;
            addSeconds = Math.Min(addSeconds, clock.Elapsed.TotalSeconds);
            vote.Complete(result);
        });
        Report("sign-vote, packed (1 core)", voteSeconds, packed.Length);
        Report("  of which the n adds", addSeconds, packed.Length);

        Console.WriteLine();
        Console.WriteLine($"allocation per update, streaming mean: {meanAllocated / (double)n:F1} B; packed sign vote: {voteAllocated / (double)n:F1} B " +
                          (meanAllocated == 0 && voteAllocated == 0 ? "(none: OK)" : "(NOT zero)"));
        return meanAllocated == 0 && voteAllocated == 0 ? 0 : 1;
    }

    // CPU time of the process during the best repetition: shows whether other processes were competing.
    private static double _bestCpu;

    // Bytes allocated on all threads during the best repetition (scratch should come from pools).
    private static long _bestAllocated;

    private static double Best(int reps, Action action)
    {
        action(); // warm-up: JIT, page faults, thread pool
        double best = double.MaxValue;
        var process = Process.GetCurrentProcess();
        for (int r = 0; r < reps; r++)
        {
            process.Refresh();
            var cpu = process.TotalProcessorTime;
            long allocated = GC.GetTotalAllocatedBytes(precise: true);
            var clock = Stopwatch.StartNew();
            action();
            double seconds = clock.Elapsed.TotalSeconds;
            allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated;
            process.Refresh();
            if (seconds < best)
            {
                best = seconds;
                _bestCpu = (process.TotalProcessorTime - cpu).TotalSeconds;
                _bestAllocated = allocated;
            }
        }

        return best;
    }

    /// <summary>The ceiling for a one-pass rule: all cores summing the same input with SIMD.</summary>
    private static double MeasureReadBandwidth(ReadOnlyMemory<float> data, int reps)
    {
        const int chunk = 1 << 16;
        int chunks = (data.Length + chunk - 1) / chunk;
        var sums = new float[chunks];
        double seconds = Best(reps, () => Parallel.For(0, chunks, c =>
        {
            var span = data.Span.Slice(c * chunk, Math.Min(chunk, data.Length - (c * chunk)));
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(span);
            Vector<float> a0 = default, a1 = default, a2 = default, a3 = default;
            int v = 0;
            for (; v + 4 <= vectors.Length; v += 4)
            {
                a0 += vectors[v];
                a1 += vectors[v + 1];
                a2 += vectors[v + 2];
                a3 += vectors[v + 3];
            }

            for (; v < vectors.Length; v++)
            {
                a0 += vectors[v];
            }

            sums[c] = Vector.Sum(a0 + a1 + a2 + a3);
        }));
        GC.KeepAlive(sums);
        return 4.0 * data.Length / seconds;
    }

    private static float[] RandomUpdates(int n, int d)
    {
        var data = new float[(long)n * d];
        Parallel.For(0, n, i =>
        {
            var random = new Random(1000 + i);
            var row = data.AsSpan(i * d, d);
            for (int j = 0; j < row.Length; j++)
            {
                row[j] = (random.NextSingle() - 0.5f) * 0.02f;
            }
        });
        return data;
    }
}
