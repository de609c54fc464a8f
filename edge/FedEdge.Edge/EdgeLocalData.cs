using FedEdge.Data;

namespace FedEdge.Edge;

/// <summary>The device's training data and, optionally, a local test set for the accuracy it reports.</summary>
public sealed record EdgeLocalData(Dataset Train, Dataset? Test = null)
{
    /// <summary>
    /// Loads <see cref="EdgeDataOptions.Source"/>; with <see cref="EdgeDataOptions.Partition"/> set, keeps only this
    /// device's share (the same NIID-Bench partition every device of the demo computes with the same seed). Fashion-MNIST
    /// is read without holding what the device does not keep (the other devices' images, the test images past
    /// <see cref="EdgeDataOptions.MaxEvaluationSamples"/>), so its memory is that of the share; other sources are
    /// loaded whole first, so a device best reads its own files (<c>fededge data split</c>).
    /// </summary>
    public static EdgeLocalData Load(EdgeDataOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.Source))
            throw new InvalidOperationException("No local data: set Edge:Data:Source (for example 'fashion-mnist' or 'npy:X.npy,Y.npy') or pass --data.");
        var partitioned = !string.IsNullOrWhiteSpace(options.Partition);
        if (partitioned && (options.PartitionCount < 1 || options.PartitionIndex < 0 || options.PartitionIndex >= options.PartitionCount))
            throw new ArgumentOutOfRangeException(nameof(options), $"Partition index {options.PartitionIndex} is not in [0, {options.PartitionCount}).");
        int[] Share(long[] labels) => Partition.Apply(options.Partition!, labels, options.PartitionCount, options.PartitionSeed)[options.PartitionIndex];

        var source = DatasetSource.Parse(options.Source);
        if (source.Kind == DatasetSourceKind.FashionMnist)
        {
            // 8-bit images stay 8-bit in memory (a quarter of the float size; batches are converted on copy).
            var directory = source.Paths.Count > 0 ? source.Paths[0] : null;
            var train = partitioned ? FashionMnist.LoadTrain(directory, FeatureStorage.Byte, Share) : FashionMnist.LoadTrain(directory, FeatureStorage.Byte);
            var test = options.MaxEvaluationSamples > 0 ? FashionMnist.LoadTest(directory, FeatureStorage.Byte, options.MaxEvaluationSamples) : null;
            return new EdgeLocalData(train, test);
        }
        var loaded = source.Load();
        return new EdgeLocalData(partitioned ? loaded.Train.Subset(Share(loaded.Train.Labels)) : loaded.Train, loaded.Test);
    }
}
