using System.Collections.Concurrent;
using FedEdge.Edge.Training;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Microsoft.Extensions.Logging;

namespace FedEdge.Edge.Tests.Agent;

/// <summary>The agent's simulation hooks: training on a <see cref="TrainingWorkerPool"/>, and an <see cref="IDeviceSpeed"/>'s outage.</summary>
public sealed class SimulatedDeviceAgentTests : AgentOverBrokerTest
{
    private EdgeAgentOptions Options() => new()
    {
        StateDirectory = Dir.Combine("state"),
        Broker = Broker.Address.ToString(),
        Training = new EdgeTrainingOptions { LocalEpochs = 1, BatchSize = 16, LearningRate = 0.1f, Threads = 1, Seed = 3 },
        Compression = new EdgeCompressionOptions { Codec = "fp16", ErrorFeedback = "none" },
        Mqtt = new EdgeMqttOptions { ReconnectMinDelay = TimeSpan.FromMilliseconds(50), ReconnectMaxDelay = TimeSpan.FromMilliseconds(500), KeepAlive = TimeSpan.FromSeconds(5) },
        Outbox = new EdgeOutboxOptions { Fsync = false },
    };

    private EdgeAgent Agent(ILoggerFactory? loggers = null, IDeviceSpeed? speed = null, TaskScheduler? scheduler = null, IUpdateTransform? transform = null) =>
        new(Options(), Federation.Identity(), new EdgeLocalData(TestFederation.Data(128, seed: 1), TestFederation.Data(64, seed: 2)),
            loggers: loggers, transform: transform, speed: speed, trainingScheduler: scheduler);

    private async Task PublishModelAsync(long version, float shift = 0)
    {
        foreach (var (topic, payload) in Federation.Publish(version, Federation.ModelBytes(shift)).Messages())
            await Cloud.PublishAsync(topic, payload, retain: true);
    }

    private string UpdateTopic => MqttTopics.Update(TestFederation.Name, Federation.DeviceId);

    private string StatusTopic => MqttTopics.Status(TestFederation.Name, Federation.DeviceId);

    [Fact]
    public async Task Local_training_runs_on_the_worker_pools_threads()
    {
        using var pool = new TrainingWorkerPool(2, "test-train");
        using var loggers = new ThreadRecordingLoggers();
        var transform = new ThreadRecordingTransform();
        await PublishModelAsync(1);
        var agent = Agent(loggers, scheduler: pool, transform: transform);
        using var stop = new CancellationTokenSource();
        var running = agent.RunAsync(stop.Token);
        await Eventually.HoldsAsync(() => agent.Statistics.Rounds == 1, "round on v1", 60);
        await stop.CancelAsync();
        await running;

        // The trainer logs "session built" from inside LocalTrainer.Train: the thread that trained.
        var trainedOn = Assert.Single(loggers.Entries, e => e.Category.EndsWith(nameof(LocalTrainer), StringComparison.Ordinal) && e.EventId == 400).Thread;
        Assert.Contains(trainedOn, pool.Threads);
        // What follows training in the round (here the update transform, where a colluding attacker blocks) left the pool.
        var transformedOn = Assert.Single(transform.Threads);
        Assert.DoesNotContain(transformedOn, pool.Threads);
    }

    [Fact]
    public async Task Without_a_pool_training_stays_on_the_thread_pool()
    {
        using var loggers = new ThreadRecordingLoggers();
        await PublishModelAsync(1);
        var agent = Agent(loggers);
        using var stop = new CancellationTokenSource();
        var running = agent.RunAsync(stop.Token);
        await Eventually.HoldsAsync(() => agent.Statistics.Rounds == 1, "round on v1", 60);
        await stop.CancelAsync();
        await running;

        var trained = Assert.Single(loggers.Entries, e => e.Category.EndsWith(nameof(LocalTrainer), StringComparison.Ordinal) && e.EventId == 400);
        Assert.True(trained.IsThreadPoolThread);
    }

    [Fact]
    public async Task An_outage_takes_the_device_offline_and_holds_its_update_until_it_is_back()
    {
        var speed = new ScriptedSpeed(outageAfterRound: 1, TimeSpan.FromSeconds(1.5));
        await PublishModelAsync(1);
        var agent = Agent(speed: speed);
        using var stop = new CancellationTokenSource();
        var running = agent.RunAsync(stop.Token);
        await Eventually.HoldsAsync(() => Broker.Published.Any(p => p.Topic == UpdateTopic), "update on v1 after the outage", 60);

        // What the broker saw from the device, in order: online, offline (the outage), online again, then the update.
        var seen = Broker.Published.Where(p => p.ClientId == Federation.DeviceId).Select(p => p.Topic == UpdateTopic ? "update"
            : p.Topic == StatusTopic ? DeviceStatuses.Decode(p.Payload, TestFederation.Name, Federation.DeviceId).GetValueOrThrow().State.ToString() : p.Topic).ToList();
        Assert.Equal(["Online", "Offline", "Online", "update"], seen);
        Assert.Equal(1, agent.Statistics.Outages);
        Assert.Equal(2, agent.Link!.ConnectCount);
        var (round, trainingTime) = Assert.Single(speed.Calls);
        Assert.Equal(1, round);
        Assert.True(trainingTime > TimeSpan.Zero);

        // Round 2 has no outage: the device stays online.
        await PublishModelAsync(2, shift: 0.01f);
        await Eventually.HoldsAsync(() => Broker.Published.Count(p => p.Topic == UpdateTopic) >= 2, "update on v2", 60);
        Assert.Equal(1, agent.Statistics.Outages);
        Assert.Equal([1, 2], speed.Calls.Select(c => c.Round));
        await stop.CancelAsync();
        await running;
    }

    /// <summary>Leaves Δ unchanged; records the thread it ran on.</summary>
    private sealed class ThreadRecordingTransform : IUpdateTransform
    {
        public ConcurrentQueue<Thread> Threads { get; } = new();

        public void Apply(Span<float> delta, long globalVersion) => Threads.Enqueue(Thread.CurrentThread);
    }

    /// <summary>No extra time; one outage after the given round.</summary>
    private sealed class ScriptedSpeed(int outageAfterRound, TimeSpan outage) : IDeviceSpeed
    {
        public ConcurrentQueue<(int Round, TimeSpan TrainingTime)> Calls { get; } = new();

        public DeviceRoundTiming AfterTraining(int round, TimeSpan trainingTime)
        {
            Calls.Enqueue((round, trainingTime));
            return new DeviceRoundTiming(TimeSpan.Zero, round == outageAfterRound ? outage : TimeSpan.Zero);
        }
    }

    /// <summary>Records each log entry's category, event id and the thread that wrote it.</summary>
    private sealed class ThreadRecordingLoggers : ILoggerFactory, ILoggerProvider
    {
        public ConcurrentQueue<(string Category, int EventId, Thread Thread, bool IsThreadPoolThread)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Recorder(this, categoryName);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        private sealed class Recorder(ThreadRecordingLoggers owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner.Entries.Enqueue((category, eventId.Id, Thread.CurrentThread, Thread.CurrentThread.IsThreadPoolThread));
        }
    }
}
