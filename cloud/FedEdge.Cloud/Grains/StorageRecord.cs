using Orleans.Runtime;
using Orleans.Storage;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// A record kept through the configured grain-storage provider under an id of its own (not a grain's), so the
/// update log works unchanged on SQLite and on Redis.
/// </summary>
internal sealed class StorageRecord<T>(IGrainStorage storage, string stateName, GrainId id) where T : class, new()
{
    private readonly GrainState<T> _record = new(new T());

    public async Task WriteAsync(T value)
    {
        _record.State = value;
        try
        {
            await storage.WriteStateAsync(stateName, id, _record);
        }
        catch (InconsistentStateException)
        {
            // A record left by an earlier attempt that did not complete: take its etag and overwrite it.
            await storage.ReadStateAsync(stateName, id, _record);
            _record.State = value;
            await storage.WriteStateAsync(stateName, id, _record);
        }
    }

    public async Task<T?> ReadAsync()
    {
        await storage.ReadStateAsync(stateName, id, _record);
        return _record.RecordExists ? _record.State : null;
    }

    public async Task ClearAsync()
    {
        await storage.ReadStateAsync(stateName, id, _record);
        if (_record.RecordExists) await storage.ClearStateAsync(stateName, id, _record);
    }
}
