using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Hosting;
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
/// The cloud's share of a synchronous round, training excluded: N devices over the embedded broker answer each
/// model announcement at once with a signed sign-codec update (d parameters). Per round it measures
/// <list type="bullet">
/// <item>overhead: from the broker's PUBACK of the last update the round needs to the next version's announcement
/// reaching a device (ingest of the stragglers, aggregation, model write, signing, publication);</item>
/// <item>round time: announcement to announcement (devices answering instantly; they read the announcement only,
/// not the model chunks, so model download time is not in it).</item>
/// </list>
/// The first round is a warm-up (devices subscribe at different times) and is not counted.
/// </summary>
public static class RoundOverheadBenchmark
{
    public sealed record Result(int Devices, int Dimension, int Rounds, double[] OverheadMs, double[] RoundMs)
    {
        public double MedianOverheadMs => BenchmarkStatistics.Median(OverheadMs);
        public double MedianRoundMs => BenchmarkStatistics.Median(RoundMs);
    }

    public static async Task<Result> RunAsync(int devices = 100, int rounds = 5, int dimension = 100_000, bool synchronousFull = true,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(devices, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(rounds, 1);
        const string federationName = "bench-round";
        var clients = new List<IMqttClient>();
        await using var cloud = await BenchmarkCloud.StartAsync(synchronousFull, cancellationToken);
        try
        {
            var registry = cloud.Services.GetRequiredService<DeviceRegistry>();
            var cloudKey = cloud.Services.GetRequiredService<CloudSigningKey>().PublicKey;
            var total = rounds + 1;
            var clock = Stopwatch.StartNew();
            var announced = new ConcurrentDictionary<long, double>();
            var lastAck = new ConcurrentDictionary<long, double>();
            var answered = new ConcurrentDictionary<long, int>();
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var failure = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);

            var model = Training.Zoo.ModelZoo.Create("logreg", [dimension - 1], classes: 1, seed: 1).ToByteArray();
            var federation = cloud.Services.GetRequiredService<IGrainFactory>().GetGrain<IFederationGrain>(federationName);
            var random = new Random(7);
            var values = new float[dimension];
            var keys = new List<(string Id, string Password, SigningKeyPair Key, byte[] Payload)>();
            for (var i = 0; i < devices; i++)
            {
                var id = $"round-{i:D3}";
                var (_, password, privateKey) = registry.Add(id, federationName);
                for (var j = 0; j < dimension; j++) values[j] = (float)(random.NextDouble() - 0.5);
                keys.Add((id, password, SigningKeyPair.FromPrivateKey(id, privateKey), SignCodec.Default.Encode(values)));
            }
            await federation.StartAsync(new FederationConfig
            {
                Model = "logreg",
                Codec = SignCodec.Default.Spec,
                Rule = "mean",
                Rounds = total,
                Mode = FederationMode.Sync,
                SampleFraction = 1,
                QuorumFraction = 1,
                RoundDeadline = TimeSpan.FromMinutes(5),
            }, new Immutable<byte[]>(model));

            foreach (var (id, password, key, payload) in keys)
            {
                var verifier = new ModelAnnouncementVerifier(federationName, new VerificationKeyRing(new VerificationKey("cloud", cloudKey)));
                var latest = -1L;
                var client = await cloud.ConnectAsync(id, id, password, cancellationToken, c => c.ApplicationMessageReceivedAsync += e =>
                {
                    var now = clock.Elapsed.TotalMilliseconds;
                    var started = ModelAssembler.Start(e.ApplicationMessage.Payload.ToArray(), verifier);
                    if (!started.IsAccepted) return Task.CompletedTask;
                    var version = started.Value.Announcement.ModelVersion;
                    if (version <= latest) return Task.CompletedTask;
                    latest = version;
                    announced.TryAdd(version, now);
                    if (version >= total)
                    {
                        done.TrySetResult();
                        return Task.CompletedTask;
                    }
                    // Answer at once, outside the client's receive loop (a QoS 1 publish waits for its PUBACK).
                    _ = Task.Run(async () =>
                    {
                        try
                        {
                            var envelope = new UpdateEnvelope
                            {
                                Federation = federationName,
                                DeviceId = id,
                                BaseModelVersion = version,
                                SampleCount = 1,
                                Codec = SignCodec.Default.Spec,
                                Dimension = dimension,
                                Payload = ByteString.CopyFrom(payload),
                            };
                            var signed = new UpdateEnvelopeSigner(key).Sign(envelope);
                            var frame = UpdateFramer.Frame(signed, envelope.UpdateId.Span, int.MaxValue).Single();
                            await c.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Update(federationName, id)).WithPayload(frame)
                                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);
                            var acked = clock.Elapsed.TotalMilliseconds;
                            lastAck.AddOrUpdate(version, acked, (_, previous) => Math.Max(previous, acked));
                            answered.AddOrUpdate(version, 1, (_, n) => n + 1);
                        }
                        catch (Exception error)
                        {
                            failure.TrySetResult(error);
                        }
                    }, cancellationToken);
                    return Task.CompletedTask;
                });
                await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
                    .WithTopicFilter(MqttTopics.Model(federationName), MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);
                clients.Add(client);
            }

            var finished = await Task.WhenAny(done.Task, failure.Task, Task.Delay(TimeSpan.FromMinutes(5), cancellationToken));
            if (finished == failure.Task) throw new InvalidOperationException("a device failed to publish its update", failure.Task.Result);
            if (finished != done.Task) throw new TimeoutException($"only {announced.Count} of {total + 1} versions were announced within 5 minutes");

            // Round r (r ≥ 2, after the warm-up) is based on v(r−1) and ends with the announcement of v(r).
            var overhead = new List<double>();
            var round = new List<double>();
            for (var v = 2; v <= total; v++)
            {
                if (answered.GetValueOrDefault(v - 1) != devices)
                    throw new InvalidOperationException($"round {v}: {answered.GetValueOrDefault(v - 1)} of {devices} devices answered v{v - 1}");
                overhead.Add(announced[v] - lastAck[v - 1]);
                round.Add(announced[v] - announced[v - 1]);
            }
            foreach (var (_, _, key, _) in keys) key.Dispose();
            // The last publication still clears the previous version's retained chunks after its announcement.
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            await cloud.StopAsync(cancellationToken);
            return new Result(devices, dimension, rounds, overhead.ToArray(), round.ToArray());
        }
        finally
        {
            foreach (var client in clients) client.Dispose();
        }
    }
}
