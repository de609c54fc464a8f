using FedEdge.Cloud.Grains;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Storage;

namespace FedEdge.Cloud.Storage;

/// <summary>
/// The update log in the configured grain storage (Redis in a multi-silo deployment, where a model grain may
/// reactivate on another machine): a record per update holding its envelope, and an index record per model listing
/// each segment's updates in order. An append writes both (the index writes of concurrent appends are coalesced);
/// an update whose envelope record is missing when the log is opened was never acknowledged, and is skipped.
/// </summary>
public sealed class GrainStorageUpdateLog(IGrainStorage storage, ILogger<GrainStorageUpdateLog> logger) : IUpdateLog
{
    public async Task<IModelUpdateLog> OpenAsync(string model, long pending, CancellationToken cancellationToken = default)
    {
        var index = new GrainState<UpdateLogIndex>(new UpdateLogIndex());
        var indexId = GrainId.Create("fededge-update-log", model);
        await storage.ReadStateAsync(IndexState, indexId, index);
        var log = new ModelLog(storage, model, index, indexId);
        var segments = log.Segments;

        var recovered = new List<LoggedUpdate>();
        var seen = new HashSet<(string, string)>();
        foreach (var update in segments.GetValueOrDefault(pending) ?? [])
        {
            var envelope = await log.Record(pending, update).ReadAsync();
            if (envelope is null)
                logger.LogWarning("Update log {Model}: update {Update} of {Device} has no envelope record (never acknowledged); skipped", model, update.UpdateId, update.DeviceId);
            else if (seen.Add((update.DeviceId, update.UpdateId)))
                recovered.Add(new LoggedUpdate(update, envelope.Envelope));
        }
        log.Recovered = recovered;
        var others = segments.Keys.Where(s => s != pending).ToList();
        if (others.Count > 0 || recovered.Count != (segments.GetValueOrDefault(pending)?.Count ?? 0))
        {
            segments.Remove(pending);
            if (recovered.Count > 0) segments[pending] = [.. recovered.Select(r => r.Update)];
            await log.DropAsync(others);
        }
        return log;
    }

    private const string IndexState = "update-log";
    private const string RecordState = "update-log-entry";

    private sealed class ModelLog : IModelUpdateLog
    {
        private readonly IGrainStorage _storage;
        private readonly string _model;
        private readonly GrainState<UpdateLogIndex> _index;

        public ModelLog(IGrainStorage storage, string model, GrainState<UpdateLogIndex> index, GrainId indexId)
        {
            _storage = storage;
            _model = model;
            _index = index;
            _indexWriter = new CoalescingWriter(() =>
            {
                lock (_gate) return storage.WriteStateAsync(IndexState, indexId, index);
            });
        }

        /// <summary>Guards the index: its writes serialize it (synchronously, before their first await) while appends may change it.</summary>
        private readonly Lock _gate = new();
        private readonly CoalescingWriter _indexWriter;
        /// <summary>Records written by this activation, which know their ETags: deleting one needs no read.</summary>
        private readonly Dictionary<(long, string, string), StorageRecord<StoredUpdate>> _records = [];

        public IReadOnlyList<LoggedUpdate> Recovered { get; set; } = [];

        /// <summary>The index's segments (an index never written reads as empty).</summary>
        public Dictionary<long, List<PendingUpdate>> Segments => (_index.State ??= new UpdateLogIndex()).Segments;

        public async Task AppendAsync(long segment, LoggedUpdate update)
        {
            lock (_gate)
            {
                var list = Segments.TryGetValue(segment, out var existing) ? existing : Segments[segment] = [];
                list.Add(update.Update);
            }
            await Task.WhenAll(Record(segment, update.Update).WriteAsync(new StoredUpdate { Envelope = update.Envelope.ToArray() }), _indexWriter.WriteAsync());
        }

        public Task DropThroughAsync(long segment)
        {
            List<long> through;
            lock (_gate) through = [.. Segments.Keys.Where(s => s <= segment)];
            return DropAsync(through);
        }

        /// <summary>Removes segments from the index, and once that is durable their envelope records.</summary>
        public async Task DropAsync(IReadOnlyList<long> segments)
        {
            var dropped = new List<(long Segment, PendingUpdate Update)>();
            lock (_gate)
            {
                foreach (var segment in segments)
                    if (Segments.Remove(segment, out var updates))
                        dropped.AddRange(updates.Select(u => (segment, u)));
            }
            await _indexWriter.WriteAsync();
            await Task.WhenAll(dropped.Select(d => ClearAsync(d.Segment, d.Update)));
        }

        private Task ClearAsync(long segment, PendingUpdate update)
        {
            StorageRecord<StoredUpdate>? record;
            lock (_gate) _records.Remove((segment, update.DeviceId, update.UpdateId), out record);
            return (record ?? Record(segment, update)).ClearAsync();
        }

        public StorageRecord<StoredUpdate> Record(long segment, PendingUpdate update)
        {
            var record = new StorageRecord<StoredUpdate>(_storage, RecordState, GrainId.Create("fededge-update-log-entry", $"{_model}/{segment}/{update.DeviceId}/{update.UpdateId}"));
            lock (_gate) _records[(segment, update.DeviceId, update.UpdateId)] = record;
            return record;
        }
    }
}

/// <summary>A model's update log index in grain storage: each segment's updates, in the order appended.</summary>
[GenerateSerializer]
public sealed class UpdateLogIndex
{
    [Id(0)] public Dictionary<long, List<PendingUpdate>> Segments { get; set; } = [];
}
