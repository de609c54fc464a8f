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
/// </summary>
public static class IngestBenchmark
{
    /// <param name="CeilingCpuMs">Process CPU time per message in the broker-only run (all threads, this process hosts both sides).</param>
    /// <param name="IngestCpuMs">Process CPU time per update in the ingest run: less sensitive to other load on the machine than the rates.</param>
    public sealed record Result(int Updates, int Dimension, int FrameBytes, double CeilingPerSecond, double IngestPerSecond, bool SynchronousFull,
        double CeilingCpuMs, double IngestCpuMs)
    {
        public double Fraction => IngestPerSecond / CeilingPerSecond;

        public override string ToString() =>
            $"sign updates d = {Dimension:N0}: {FrameBytes:N0} bytes per frame ({FrameBytes / (Dimension / 8.0):F3} × d/8)\n" +
            $"broker ceiling  {CeilingPerSecond,10:N0} msg/s  ({CeilingPerSecond * FrameBytes / 1e6:N1} MB/s)\n" +
            $"cloud ingest    {IngestPerSecond,10:N0} upd/s  ({IngestPerSecond * FrameBytes / 1e6:N1} MB/s), {Fraction:P0} of the ceiling " +
            $"(verify + decode + persist{(SynchronousFull ? ", SQLite synchronous=FULL" : ", SQLite synchronous=NORMAL")})";
    }

    public static async Task<Result> RunAsync(int devices = 10, int updatesPerDevice = 40, int dimension = 100_000, bool synchronousFull = true,
        CancellationToken cancellationToken = default, int? bufferSize = null, int warmupPerDevice = 2)
    {
        await using var cloud = await BenchmarkCloud.StartAsync(synchronousFull, cancellationToken);
        var registry = cloud.Services.GetRequiredService<DeviceRegistry>();
        var service = cloud.Services.GetRequiredService<ServiceIdentity>();

        // A d-parameter linear model: d = inputs·1 + 1 ⇒ inputs = d − 1 (logreg with one class output).
        var model = Training.Zoo.ModelZoo.Create("logreg", [dimension - 1], classes: 1, seed: 1).ToByteArray();
        var clients = new List<(IMqttClient Client, string Topic, List<byte[]> Frames)>();
        var random = new Random(1);
        var values = new float[dimension];
        for (var i = 0; i < devices; i++)
        {
            var id = $"bench-{i:D3}";
            var (_, password, privateKey) = registry.Add(id, "bench");
            using var key = SigningKeyPair.FromPrivateKey(id, privateKey);
            var frames = new List<byte[]>();
            for (var u = 0; u < warmupPerDevice + updatesPerDevice; u++)
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
        var warmup = devices * warmupPerDevice;
        var total = devices * updatesPerDevice;
        var frameBytes = clients[0].Frames[0].Length;

        // Ceiling: the same frames through the same broker to one QoS 1 subscriber that does nothing with them.
        var watcher = await cloud.ConnectAsync("bench-watcher", service.UserName, service.Password, cancellationToken);
        var received = 0;
        var warm = new TaskCompletionSource();
        var all = new TaskCompletionSource();
        watcher.ApplicationMessageReceivedAsync += _ =>
        {
            var n = Interlocked.Increment(ref received);
            if (n == warmup) warm.TrySetResult();
            if (n == warmup + total) all.TrySetResult();
            return Task.CompletedTask;
        };
        await watcher.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("fededge/bench/telemetry/+", MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);
        if (warmup > 0)
        {
            await Task.WhenAll(clients.Select(c => PublishAllAsync(c.Client, c.Topic.Replace("/update/", "/telemetry/"), c.Frames.Take(warmupPerDevice), cancellationToken)));
            await warm.Task.WaitAsync(TimeSpan.FromMinutes(5), cancellationToken);
        }
        var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(clients.Select(c => PublishAllAsync(c.Client, c.Topic.Replace("/update/", "/telemetry/"), c.Frames.Skip(warmupPerDevice), cancellationToken)));
        await all.Task.WaitAsync(TimeSpan.FromMinutes(5), cancellationToken);
        var ceiling = total / clock.Elapsed.TotalSeconds;
        process.Refresh();
        var ceilingCpuMs = (process.TotalProcessorTime - cpu).TotalMilliseconds / total;
        await watcher.DisconnectAsync(cancellationToken: cancellationToken);

        // Ingest: verified, decoded, buffered by FedBuff and persisted before acknowledgement.
        var federation = cloud.Services.GetRequiredService<IGrainFactory>().GetGrain<IFederationGrain>("bench");
        await federation.StartAsync(new FederationConfig
        {
            Model = "logreg",
            Codec = SignCodec.Default.Spec,
            Rule = "mean",
            Rounds = 0,
            Mode = FederationMode.Async,
            BufferSize = bufferSize ?? devices,
            MaxStaleness = int.MaxValue,
        }, new Immutable<byte[]>(model));
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        clock.Restart();
        await Task.WhenAll(clients.Select(c => PublishAllAsync(c.Client, c.Topic, c.Frames.Take(warmupPerDevice), cancellationToken)));
        await WaitForIngestedAsync(metrics, warmup, clock, cancellationToken);
        process.Refresh();
        cpu = process.TotalProcessorTime;
        clock.Restart();
        await Task.WhenAll(clients.Select(c => PublishAllAsync(c.Client, c.Topic, c.Frames.Skip(warmupPerDevice), cancellationToken)));
        await WaitForIngestedAsync(metrics, warmup + total, clock, cancellationToken);
        var ingest = total / clock.Elapsed.TotalSeconds;
        process.Refresh();
        var ingestCpuMs = (process.TotalProcessorTime - cpu).TotalMilliseconds / total;
        if (metrics.Accepted != warmup + total)
            throw new InvalidOperationException($"{warmup + total - metrics.Accepted} update(s) were rejected: {string.Join(", ", metrics.RejectedByReason)}");
        foreach (var c in clients) c.Client.Dispose();
        await cloud.StopAsync(cancellationToken);
        return new Result(total, dimension, frameBytes, ceiling, ingest, synchronousFull, ceilingCpuMs, ingestCpuMs);
    }

    private static async Task WaitForIngestedAsync(IngestionMetrics metrics, int count, Stopwatch clock, CancellationToken cancellationToken)
    {
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
