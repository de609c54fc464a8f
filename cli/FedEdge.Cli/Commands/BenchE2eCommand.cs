using System.CommandLine;
using FedEdge.Cloud.Benchmarks;
using FedEdge.Cloud.Hosting;
using FedEdge.Compression;
using FedEdge.Protocol;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge bench e2e`: the cloud's end-to-end figures over the embedded broker (issue 4):
/// (a) ingest rate of signed sign-codec updates as a fraction of the broker's own ceiling, measured in the same run;
/// (b) round overhead and round time of a sync round of N devices answering instantly (training excluded);
/// (c) bytes per sign update against d/8.
/// </summary>
internal static class BenchE2eCommand
{
    public static Command Create()
    {
        var d = new Option<int>("--d") { Description = "Update dimension.", DefaultValueFactory = _ => 100_000 };
        var ingestDevices = new Option<int>("--ingest-devices") { Description = "Publishing devices for the ingest measurement.", DefaultValueFactory = _ => 100 };
        var updates = new Option<int>("--updates") { Description = "Updates per device in each timed window of the ingest measurement.", DefaultValueFactory = _ => 20 };
        var repeats = new Option<int>("--repeats") { Description = "Pairs of windows (broker ceiling, then cloud ingest) of the ingest measurement; the table gives their medians.", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed updates per device through each path before the timed windows (JIT, first calls).", DefaultValueFactory = _ => 20 };
        var roundDevices = new Option<int>("--round-devices") { Description = "Devices of the round measurement.", DefaultValueFactory = _ => 100 };
        var rounds = new Option<int>("--rounds") { Description = "Measured rounds (after one warm-up round).", DefaultValueFactory = _ => 5 };
        var buffer = new Option<int>("--buffer") { Description = "FedBuff buffer K of the ingest federation (0 = never aggregate, everything stays pending).", DefaultValueFactory = _ => 100 };
        var normal = new Option<bool>("--sync-normal") { Description = "SQLite synchronous=NORMAL instead of FULL (durable on crash, not on power loss)." };
        var command = new Command("e2e", "Cloud ingest vs broker ceiling, sync-round overhead, bytes per sign update.")
        {
            d, ingestDevices, updates, repeats, warmup, buffer, roundDevices, rounds, normal,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var dimension = parse.GetValue(d);
            var full = !parse.GetValue(normal);
            Console.WriteLine($"fededge bench e2e: d = {dimension:N0}, sign codec, embedded broker, SQLite synchronous={(full ? "FULL" : "NORMAL")}, {Environment.ProcessorCount} cores, {CloudRuntimeSettings.Describe()}");
            if (!CloudRuntimeSettings.AsDeployed)
                Console.WriteLine($"note: the cloud is deployed with {CloudRuntimeSettings.Prefix}; run `{CloudRuntimeSettings.Prefix} fededge bench e2e` to measure it as deployed");
            var ingest = await IngestBenchmark.RunAsync(parse.GetValue(ingestDevices), parse.GetValue(updates), dimension, full, cancellationToken,
                bufferSize: parse.GetValue(buffer) is > 0 and var k ? k : int.MaxValue, warmupPerDevice: parse.GetValue(warmup), repeats: parse.GetValue(repeats));
            var round = await RoundOverheadBenchmark.RunAsync(parse.GetValue(roundDevices), parse.GetValue(rounds), dimension, full, cancellationToken);

            var payload = SignCodec.Default.Encode(new float[dimension]).Length;
            var topic = MqttTopics.Update("bench", "bench-000");
            // MQTT 5 PUBLISH at QoS 1: fixed header (1 + remaining-length varint), topic (2 + n), packet id (2), properties length (1).
            var remaining = 2 + topic.Length + 2 + 1 + ingest.FrameBytes;
            var packet = 1 + (remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4) + remaining;
            var eighth = dimension / 8.0;

            var rows = new List<(string Metric, string Value, string Goal, string Verdict)>
            {
                ($"broker ceiling (QoS 1, 1 subscriber; median of {ingest.Pairs.Count})", $"{ingest.CeilingPerSecond:N0} msg/s", "", ""),
                ("cloud ingest (verify, decode, de-dup, persist)", $"{ingest.IngestPerSecond:N0} upd/s", "", ""),
                ("CPU per message: broker only; cloud ingest", $"{ingest.CeilingCpuMs:F2} ms; {ingest.IngestCpuMs:F2} ms", "", ""),
                ("ingest / ceiling (median of the pairs' ratios)", $"{ingest.Fraction:P0}", "≥ 50 %", ingest.Fraction >= 0.5 ? "met" : "NOT met"),
                ($"round overhead, {round.Devices} devices (median; max)", $"{round.MedianOverheadMs:N0} ms; {round.OverheadMs.Max():N0} ms", "≤ 200 ms", round.MedianOverheadMs <= 200 ? "met" : "NOT met"),
                ($"round time, devices answer instantly (median; max)", $"{round.MedianRoundMs:N0} ms; {round.RoundMs.Max():N0} ms", "", ""),
                ("sign payload (codec)", $"{payload:N0} B = {payload / eighth:F3} × d/8", "", ""),
                ("update frame (signed envelope, MQTT payload)", $"{ingest.FrameBytes:N0} B = {ingest.FrameBytes / eighth:F3} × d/8", "≤ 1.05 × d/8 + header",
                    payload <= 1.05 * eighth ? $"met (header {ingest.FrameBytes - payload} B)" : "NOT met"),
                ("MQTT PUBLISH packet on the wire", $"{packet:N0} B = {packet / eighth:F3} × d/8", "", ""),
            };
            var w0 = rows.Max(r => r.Metric.Length);
            var w1 = rows.Max(r => r.Value.Length);
            var w2 = rows.Max(r => r.Goal.Length);
            Console.WriteLine();
            Console.WriteLine($"| {"metric".PadRight(w0)} | {"value".PadRight(w1)} | {"goal".PadRight(w2)} | verdict");
            Console.WriteLine($"|{new string('-', w0 + 2)}|{new string('-', w1 + 2)}|{new string('-', w2 + 2)}|---------");
            foreach (var (metric, value, goal, verdict) in rows)
                Console.WriteLine($"| {metric.PadRight(w0)} | {value.PadRight(w1)} | {goal.PadRight(w2)} | {verdict}");
            Console.WriteLine();
            Console.WriteLine($"ingest pairs ({ingest.UpdatesPerWindow:N0} messages a window), ceiling msg/s / ingest upd/s: {ingest.DescribePairs()}");
            Console.WriteLine($"per-round overhead ms: {string.Join(", ", round.OverheadMs.Select(x => x.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))}; " +
                              $"round ms: {string.Join(", ", round.RoundMs.Select(x => x.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))}");
            return 0;
        });
        return command;
    }
}
