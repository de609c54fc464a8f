using System.Text;
using Azure.Messaging.EventHubs;
using Azure.Messaging.EventHubs.Producer;

namespace FedEdge.Telemetry.Tests;

/// <summary>
/// The SDK's own producer against the test endpoint: what the emulator implements is what the SDK needs (CBS,
/// management, batches with partition keys), and it refuses what the service refuses (a wrong key).
/// </summary>
public sealed class EventHubsEmulatorTests
{
    [Fact]
    public async Task The_sdk_reads_hub_and_partition_properties_and_sends_batches_by_partition_key()
    {
        await using var emulator = new EventHubsEmulator("telemetry", partitionCount: 4);
        await emulator.StartAsync();
        await using var producer = new EventHubProducerClient(emulator.ConnectionString);

        var hub = await producer.GetEventHubPropertiesAsync();
        Assert.Equal("telemetry", hub.Name);
        Assert.Equal(["0", "1", "2", "3"], hub.PartitionIds);

        for (var round = 0; round < 3; round++)
        {
            foreach (var device in new[] { "dev-a", "dev-b", "dev-c" })
            {
                using var batch = await producer.CreateBatchAsync(new CreateBatchOptions { PartitionKey = device });
                for (var i = 0; i < 5; i++)
                    Assert.True(batch.TryAdd(new EventData(Encoding.UTF8.GetBytes($"{device}:{round * 5 + i}")) { MessageId = $"{device}-{round * 5 + i}" }));
                await producer.SendAsync(batch);
            }
        }

        foreach (var device in new[] { "dev-a", "dev-b", "dev-c" })
        {
            var stored = emulator.Partition(emulator.PartitionOf(device)).Where(e => e.PartitionKey == device).ToList();
            Assert.Equal(Enumerable.Range(0, 15).Select(i => $"{device}:{i}"), stored.Select(e => Encoding.UTF8.GetString(e.Body)));
            Assert.Equal(Enumerable.Range(0, 15).Select(i => $"{device}-{i}"), stored.Select(e => e.MessageId?.ToString()));
        }
        Assert.Equal(45, emulator.Count);
        Assert.Equal((9L, 9L), (emulator.Transfers, emulator.BatchTransfers)); // one transfer per batch, in the batch format

        var partition = emulator.PartitionOf("dev-a");
        var properties = await producer.GetPartitionPropertiesAsync(partition.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(emulator.Partition(partition).Count - 1, properties.LastEnqueuedSequenceNumber);
        Assert.False(properties.IsEmpty);
    }

    [Fact]
    public async Task A_wrong_key_is_refused_and_nothing_is_stored()
    {
        await using var emulator = new EventHubsEmulator("telemetry");
        await emulator.StartAsync();
        var wrongKey = emulator.ConnectionString.Replace("SharedAccessKey=", "SharedAccessKey=x", StringComparison.Ordinal);
        await using var producer = new EventHubProducerClient(wrongKey, new EventHubProducerClientOptions
        {
            RetryOptions = new EventHubsRetryOptions { MaximumRetries = 0, TryTimeout = TimeSpan.FromSeconds(10) },
        });

        var error = await Assert.ThrowsAnyAsync<Exception>(() => producer.SendAsync([new EventData("x"u8.ToArray())]));

        Assert.True(emulator.RefusedTokens >= 1, $"the token should have been refused ({error.GetType().Name}: {error.Message})");
        Assert.Equal(0, emulator.Count);
    }
}
