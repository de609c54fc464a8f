using System.Threading.Channels;
using FedEdge.Protocol;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Telemetry.Drift;

/// <summary>
/// Publishes each new drift event as JSON (QoS 1, not retained, MQTT 5 content type application/json) on
/// <see cref="MqttTopics.DriftEvent"/> through the cloud's own MQTT connection. Events wait in a bounded queue;
/// when the broker is unreachable a publication is retried a few times and then given up (the store keeps it).
/// </summary>
public sealed class MqttDriftEventPublisher(Func<MqttApplicationMessage, CancellationToken, Task> publish, ILogger<MqttDriftEventPublisher> logger)
    : BackgroundService, IDriftEventObserver
{
    private const int Capacity = 4096;
    private const int Attempts = 4;

    private readonly Channel<DriftEvent> _queue = Channel.CreateBounded<DriftEvent>(new BoundedChannelOptions(Capacity) { SingleReader = true });
    private long _published, _dropped;

    public long Published => Interlocked.Read(ref _published);

    /// <summary>Events not published: queue full or the broker unreachable through every attempt.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    public void OnRecorded(DriftEvent driftEvent)
    {
        if (!_queue.Writer.TryWrite(driftEvent)) Interlocked.Increment(ref _dropped);
    }

    public static MqttApplicationMessage ToMessage(DriftEvent driftEvent) => new MqttApplicationMessageBuilder()
        .WithTopic(MqttTopics.DriftEvent(driftEvent.Federation, driftEvent.DeviceId))
        .WithPayload(DriftEventJson.Serialize(driftEvent))
        .WithContentType("application/json")
        .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
        .Build();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var driftEvent in _queue.Reader.ReadAllAsync(stoppingToken))
            {
                var message = ToMessage(driftEvent);
                for (var attempt = 1; ; attempt++)
                {
                    try
                    {
                        await publish(message, stoppingToken);
                        Interlocked.Increment(ref _published);
                        break;
                    }
                    catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                    {
                        if (attempt == Attempts)
                        {
                            Interlocked.Increment(ref _dropped);
                            logger.LogWarning(e, "Drift event {Id} not published on {Topic} after {Attempts} attempts", driftEvent.Id, message.Topic, Attempts);
                            break;
                        }
                        await Task.Delay(TimeSpan.FromMilliseconds(250 << attempt), stoppingToken);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
