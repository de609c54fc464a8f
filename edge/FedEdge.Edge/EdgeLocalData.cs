using FedEdge.Data;

namespace FedEdge.Edge;

/// <summary>The device's training data and, optionally, a local test set for the accuracy it reports.</summary>
public sealed record EdgeLocalData(Dataset Train, Dataset? Test = null)
{
    /// <summary>
    /// Loads <see cref="EdgeDataOptions.Source"/>; with <see cref="EdgeDataOptions.Partition"/> set, keeps only this
    /// device's share (the same NIID-Bench partition every device of the demo computes with the same seed).
    /// </summary>
    public static EdgeLocalData Load(EdgeDataOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.Source))
            throw new InvalidOperationException("No local data: set Edge:Data:Source (for example 'fashion-mnist' or 'npy:X.npy,Y.npy') or pass --data.");
        // 8-bit images stay 8-bit in memory (a quarter of the float size; batches are converted on copy).
        var storage = options.Source.StartsWith("fashion-mnist", StringComparison.OrdinalIgnoreCase) ? FeatureStorage.Byte : FeatureStorage.Float32;
        var loaded = DatasetSource.Load(options.Source, storage);
        var train = loaded.Train;
        if (!string.IsNullOrWhiteSpace(options.Partition))
        {
            if (options.PartitionCount < 1 || options.PartitionIndex < 0 || options.PartitionIndex >= options.PartitionCount)
                throw new ArgumentOutOfRangeException(nameof(options), $"Partition index {options.PartitionIndex} is not in [0, {options.PartitionCount}).");
            var shares = Partition.Apply(options.Partition, train.Labels, options.PartitionCount, options.PartitionSeed);
            train = train.Subset(shares[options.PartitionIndex]);
        }
        return new EdgeLocalData(train, loaded.Test);
    }
}
