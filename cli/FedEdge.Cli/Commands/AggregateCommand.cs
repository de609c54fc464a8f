using System.CommandLine;
using FedEdge.Aggregation;
using FedEdge.Data;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge aggregate --rule R --in U.npy --out A.npy`: aggregates an n×d float32 matrix of updates with one of
/// the library's rules and writes the d-vector (for sign-vote the ±1/0 vote).
/// </summary>
internal static class AggregateCommand
{
    public static Command Create()
    {
        var rule = new Option<string>("--rule")
        {
            Description = $"Aggregation rule: {string.Join("|", AggregationRuleFactory.Names)}.",
            Required = true,
        };
        rule.AcceptOnlyFromAmong([.. AggregationRuleFactory.Names]);
        var input = new Option<FileInfo>("--in") { Description = "n×d float32 .npy matrix of updates (one row per device).", Required = true };
        var output = new Option<FileInfo>("--out") { Description = "Where to write the aggregate, a d-vector float32 .npy.", Required = true };
        var weights = new Option<FileInfo?>("--weights") { Description = "Optional n-vector .npy of weights (sample counts) for mean, geomed, centered-clip." };
        var f = new Option<int>("--f") { Description = "f, the Byzantine updates to tolerate (trimmed-mean, krum, multi-krum, geomed, centered-clip).", DefaultValueFactory = _ => 0 };
        var m = new Option<int?>("--m") { Description = "Multi-Krum: how many lowest-scoring updates to average (default n − f)." };
        var bucket = new Option<int>("--bucket") { Description = "Bucketing pre-aggregation with buckets of S updates (0: off).", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { Description = "Seed of the bucketing shuffle.", DefaultValueFactory = _ => 0 };
        var tau = new Option<double>("--tau") { Description = "Centered clipping radius τ.", DefaultValueFactory = _ => 10.0 };
        var iterations = new Option<int?>("--iters") { Description = "Iterations: L of centered-clip (default 3), T of geomed (default 8)." };
        var nu = new Option<double>("--nu") { Description = "Geometric median smoothing ν.", DefaultValueFactory = _ => 0.1 };

        var command = new Command("aggregate", "Aggregate an n×d matrix of updates with a (robust) rule.")
        {
            rule, input, output, weights, f, m, bucket, seed, tau, iterations, nu,
        };
        command.SetAction(parse =>
        {
            try
            {
                var updates = ReadUpdates(parse.GetValue(input)!, parse.GetValue(weights));
                var parameters = new RuleParameters
                {
                    F = parse.GetValue(f),
                    M = parse.GetValue(m),
                    BucketSize = parse.GetValue(bucket),
                    Seed = parse.GetValue(seed),
                    Tau = parse.GetValue(tau),
                    Iterations = parse.GetValue(iterations),
                    Nu = parse.GetValue(nu),
                };
                var aggregator = AggregationRuleFactory.Create(parse.GetValue(rule)!, parameters, updates.Count);
                var result = new float[updates.Dimension];
                aggregator.Aggregate(updates, result);
                NpyArray.Write<float>(parse.GetValue(output)!.FullName, result, [updates.Dimension]);
                Console.WriteLine($"{aggregator.Name}: aggregated {updates.Count} updates of {updates.Dimension} coordinates into {parse.GetValue(output)!.FullName}");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"fededge aggregate: {e.Message}");
                return 2;
            }
        });
        return command;
    }

    /// <summary>Reads U (n×d float32) and optional weights (n-vector), refusing any other shape or dtype.</summary>
    internal static UpdateBatch ReadUpdates(FileInfo input, FileInfo? weightsFile)
    {
        var u = NpyArray.Read(input.FullName);
        if (u.DataType != NpyDataType.Float32)
        {
            throw new InvalidDataException($"{input.Name}: updates must be float32, got {u.DataType}.");
        }

        if (u.Shape.Length != 2 || u.Shape[0] == 0 || u.Shape[1] == 0)
        {
            throw new InvalidDataException($"{input.Name}: updates must be a non-empty n×d matrix, got shape ({string.Join(", ", u.Shape)}).");
        }

        int n = u.Shape[0], d = u.Shape[1];
        float[]? w = null;
        if (weightsFile is not null)
        {
            var weights = NpyArray.Read(weightsFile.FullName);
            if (weights.Shape.Length != 1 || weights.Shape[0] != n)
            {
                throw new InvalidDataException($"{weightsFile.Name}: weights must be a vector of n = {n} values, got shape ({string.Join(", ", weights.Shape)}).");
            }

            w = weights.ToFloat32();
        }

        var batch = new UpdateBatch((float[])u.Data, n, d, w);
        batch.EnsureValid();
        return batch;
    }
}
