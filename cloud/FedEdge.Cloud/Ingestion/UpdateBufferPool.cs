using System.Collections.Concurrent;

namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// Reuses the exact-length float buffers that incoming updates are decoded into. A fresh d-float array per update
/// lands on the large-object heap (d ≥ 21,250), and a newly committed LOH page costs a page fault on first touch:
/// measured at d = 100k, that was a larger share of ingest CPU than verifying and decoding together.
/// A buffer goes back only once the federation has answered: every strategy copies or accumulates what it keeps
/// during the submission (see <c>IRoundAggregation.Submit</c>), so the caller owns the buffer again afterwards. A
/// submission that failed or timed out keeps its buffer out of the pool, since the grain may still read it.
/// </summary>
public sealed class UpdateBufferPool(int maxBuffersPerLength)
{
    private readonly ConcurrentDictionary<int, ConcurrentBag<float[]>> _free = new();

    /// <summary>
    /// A buffer of exactly <paramref name="length"/> floats holding whatever its last user left: it is only ever a
    /// decode destination, and <see cref="Compression.IUpdateCodec.Decode"/> writes every coordinate (top-k zeroes the
    /// ones it does not keep), so clearing it here would write 400 kB per update for nothing.
    /// </summary>
    public float[] Rent(int length) =>
        _free.TryGetValue(length, out var bag) && bag.TryTake(out var buffer) ? buffer : new float[length];

    public void Return(float[] buffer)
    {
        var bag = _free.GetOrAdd(buffer.Length, _ => []);
        // Bounded: a burst beyond the ingestion concurrency leaves its extra buffers to the GC.
        if (bag.Count < maxBuffersPerLength) bag.Add(buffer);
    }
}
