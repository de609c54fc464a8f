using System.Buffers;
using System.Diagnostics;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Security;
using FedEdge.Compression;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Protocol;
using Orleans.Concurrency;

namespace FedEdge.Cloud.Benchmarks;

/// <summary>
/// Measures the cloud's ingest rate of signed sign-codec updates over the embedded broker, against the broker's
/// own ceiling for the same messages in the same run (delivered to one QoS 1 subscriber without processing).
/// Runs a throw-away cloud (FedBuff, so every update is accepted) on free loopback ports. Both measurements are
/// taken after <c>warmupPerDevice</c> untimed updates per device through the same path, so that they compare the
/// steady state of a running service rather than JIT compilation and first-call set-up.
/// <para>
/// The two rates swing with whatever else the machine does (a ceiling window of 1,000 messages lasts a third of a
/// second), so the benchmark takes <c>repeats</c> pairs, each a ceiling window right before an ingest window, and
/// reports the median of the pairs' ratios: neighbouring windows share the machine's state.
/// </para>
/// </summary>
public static class IngestBenchmark
{
    /// <summary>One ceiling window and the ingest window right after it.</summary>
    /// <param name="CeilingCpuMs">Process CPU time per message in the broker-only window (all threads, this process hosts both sides).</param>
    /// <param name="IngestCpuMs">Process CPU time per update in the ingest window: less sensitive to other load on the machine than the rates.</param>
    public sealed record Pair(double CeilingPerSecond, double IngestPerSecond, double CeilingCpuMs, double IngestCpuMs)
    {
        public double Fraction => IngestPerSecond / CeilingPerSecond;
    }

    /// <summary>The pairs in the order measured; the headline figures are their medians.</summary>
    public sealed record Result(int UpdatesPerWindow, int Dimension, int FrameBytes, bool SynchronousFull, IReadOnlyList<Pair> Pairs)
    {
        public double CeilingPerSecond => BenchmarkStatistics.Median(Pairs.Select(p => p.CeilingPerSecond));
        public double IngestPerSecond => BenchmarkStatistics.Median(Pairs.Select(p => p.IngestPerSecond));
        public double CeilingCpuMs => BenchmarkStatistics.Median(Pairs.Select(p => p.CeilingCpuMs));
        public double IngestCpuMs => BenchmarkStatistics.Median(Pairs.Select(p => p.IngestCpuMs));
        public double Fraction => BenchmarkStatistics.Median(Pairs.Select(p => p.Fraction));

        public override string ToString() =>
            $"sign updates d = {Dimension:N0}: {FrameBytes:N0} bytes per frame ({FrameBytes / (Dimension / 8.0):F3} × d/8); " +
            $"medians of {Pairs.Count} pair(s) of {UpdatesPerWindow:N0} messages\n" +
            $"broker ceiling  {CeilingPerSecond,10:N0} msg/s  ({CeilingPerSecond * FrameBytes / 1e6:N1} MB/s)\n" +
            $"cloud ingest    {IngestPerSecond,10:N0} upd/s  ({IngestPerSecond * FrameBytes / 1e6:N1} MB/s), {Fraction:P0} of the ceiling " +
            $"(verify + decode + persist{(SynchronousFull ? ", SQLite synchronous=FULL" : ", SQLite synchronous=NORMAL")})\n" +
            $"per pair, ceiling msg/s / ingest upd/s: {DescribePairs()}";

        /// <summary>Every pair as "ceiling / ingest = ratio", in the order measured.</summary>
        public string DescribePairs() => string.Join("; ", Pairs.Select(p => $"{p.CeilingPerSecond:N0} / {p.IngestPerSecond:N0} = {p.Fraction:P0}"));
    }

    public static async Task<Result> RunAsync(int devices = 10, int updatesPerDevice = 40, int dimension = 100_000, bool synchronousFull = true,
        CancellationToken cancellationToken = default, int? bufferSize = null, int warmupPerDevice = 20, int repeats = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        await using var cloud = await BenchmarkCloud.StartAsync(synchronousFull, cancellationToken);
        var registry = cloud.Services.GetRequiredService<DeviceRegistry>();
        var service = cloud.Services.GetRequiredService<ServiceIdentity>();

        // A d-parameter linear model: d = inputs·1 + 1 ⇒ inputs = d − 1 (logreg with one class output).
        var model = Training.Zoo.ModelZoo.Create("logreg", [dimension - 1], classes: 1, seed: 1).ToByteArray();
        // Every ingest window needs fresh updates (an update id is accepted once); the ceiling windows reuse them.
        var framesPerDevice = warmupPerDevice + updatesPerDevice * repeats;
        var clients = new List<(IMqttClient Client, string Topic, List<byte[]> Frames)>();
        var random = new Random(1);
        var values = new float[dimension];
        for (var i = 0; i < devices; i++)
        {
            var id = $"bench-{i:D3}";
            var (_, password, privateKey) = registry.Add(id, "bench");
            using var key = SigningKeyPair.FromPrivateKey(id, privateKey);
            var frames = new List<byte[]>();
            for (var u = 0; u < framesPerDevice; u++)
            {
                for (var j = 0; j < dimension; j++) values[j] = (float)(random.NextDouble() - 0.5);
                var envelope = new UpdateEnvelope
                {
                    Federation = "bench",
                    DeviceId = id,
                    BaseModelVersion = 0,
                    SampleCount = 1,
                    Codec = SignCodec.Default.Spec,
                    Dimension = dimension,
                    Payload = ByteString.CopyFrom(SignCodec.Default.Encode(values)),
                };
                var signed = new UpdateEnvelopeSigner(key).Sign(envelope);
                frames.Add(UpdateFramer.Frame(signed, envelope.UpdateId.Span, int.MaxValue).Single());
            }
            clients.Add((await cloud.ConnectAsync(id, id, password, cancellationToken), MqttTopics.Update("bench", id), frames));
        }
        var window = devices * updatesPerDevice;
        var frameBytes = clients[0].Frames[0].Length;

        // Ceiling: the same frames through the same broker to one QoS 1 subscriber that does nothing with them.
        var watcher = await cloud.ConnectAsync("bench-watcher", service.UserName, service.Password, cancellationToken);
        var received = 0;
        var target = 0;
        var arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        watcher.ApplicationMessageReceivedAsync += _ =>
        {
            if (Interlocked.Increment(ref received) == Volatile.Read(ref target)) arrived.TrySetResult();
            return Task.CompletedTask;
        };
        await watcher.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("fededge/bench/telemetry/+", MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);
        async Task CeilingAsync(int skip, int take)
        {
            arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref target, received + devices * take);
            await Task.WhenAll(clients.Select(c => PublishAllAsync(c.Client, c.Topic.Replace("/update/", "/telemetry/"), c.Frames.Skip(skip).Take(take), cancellationToken)));
            await arrived.Task.WaitAsync(TimeSpan.FromMinutes(5), cancellationToken);
        }

        // Ingest: verified, decoded, buffered by FedBuff and persisted before acknowledgement.
        var federation = cloud.Services.GetRequiredService<IGrainFactory>().GetGrain<IFederationGrain>("bench");
        await federation.StartAsync(new FederationConfig
        {
            Model = "logreg",
            Codec = SignCodec.Default.Spec,
            Rule = "mean",
            Rounds = 0,
            Mode = FederationMode.FedBuff,
            BufferSize = bufferSize ?? devices,
            MaxStaleness = int.MaxValue,
        }, new Immutable<byte[]>(model));
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var ingested = 0;
        async Task IngestAsync(int skip, int take)
        {
            ingested += devices * take;
            await Task.WhenAll(clients.Select(c => PublishAllAsync(c.Client, c.Topic, c.Frames.Skip(skip).Take(take), cancellationToken)));
            await WaitForIngestedAsync(metrics, ingested, cancellationToken);
        }

        if (warmupPerDevice > 0)
        {
            await CeilingAsync(0, warmupPerDevice);
            await IngestAsync(0, warmupPerDevice);
        }
        var process = Process.GetCurrentProcess();
        async Task<(double PerSecond, double CpuMs)> TimeAsync(Func<Task> run)
        {
            process.Refresh();
            var cpu = process.TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            await run();
            var seconds = clock.Elapsed.TotalSeconds;
            process.Refresh();
            return (window / seconds, (process.TotalProcessorTime - cpu).TotalMilliseconds / window);
        }
        var pairs = new List<Pair>();
        for (var r = 0; r < repeats; r++)
        {
            var skip = warmupPerDevice + r * updatesPerDevice;
            var ceiling = await TimeAsync(() => CeilingAsync(skip, updatesPerDevice));
            var ingest = await TimeAsync(() => IngestAsync(skip, updatesPerDevice));
            pairs.Add(new Pair(ceiling.PerSecond, ingest.PerSecond, ceiling.CpuMs, ingest.CpuMs));
        }
        if (metrics.Accepted != ingested)
            throw new InvalidOperationException($"{ingested - metrics.Accepted} update(s) were rejected: {string.Join(", ", metrics.RejectedByReason)}");
        await watcher.DisconnectAsync(cancellationToken: cancellationToken);
        foreach (var c in clients) c.Client.Dispose();
        await cloud.StopAsync(cancellationToken);
        return new Result(window, dimension, frameBytes, synchronousFull, pairs);
    }

    private static async Task WaitForIngestedAsync(IngestionMetrics metrics, int count, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (metrics.Accepted + metrics.RejectedByReason.Values.Sum() < count)
        {
            if (clock.Elapsed > TimeSpan.FromMinutes(10)) throw new TimeoutException($"only {metrics.Accepted} of {count} updates ingested");
            await Task.Delay(5, cancellationToken);
        }
    }

    private static async Task PublishAllAsync(IMqttClient client, string topic, IEnumerable<byte[]> frames, CancellationToken cancellationToken)
    {
        foreach (var frame in frames)
            await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(frame)
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);
    }
}
