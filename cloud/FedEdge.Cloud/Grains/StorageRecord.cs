using Orleans.Runtime;
using Orleans.Storage;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// A record kept through the configured grain-storage provider under an id of its own (not a grain's), so the
/// update log works unchanged on SQLite and on Redis. The instance remembers the record's ETag from its last write
/// or read, so clearing it needs no read (an update record's read is its whole envelope); the value itself is not
/// kept once written or read.
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
        finally
        {
            _record.State = new T();
        }
    }

    public async Task<T?> ReadAsync()
    {
        await storage.ReadStateAsync(stateName, id, _record);
        var value = _record.RecordExists ? _record.State : null;
        _record.State = new T();
        return value;
    }

    public async Task ClearAsync()
    {
        if (_record.ETag is not null)
        {
            try
            {
                await storage.ClearStateAsync(stateName, id, _record);
                return;
            }
            catch (InconsistentStateException)
            {
                // Changed since this instance wrote or read it: clear what is there now.
            }
        }
        await storage.ReadStateAsync(stateName, id, _record);
        if (_record.RecordExists) await storage.ClearStateAsync(stateName, id, _record);
    }
}
