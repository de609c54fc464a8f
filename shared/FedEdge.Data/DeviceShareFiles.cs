namespace FedEdge.Data;

/// <summary>
/// Cuts one device's share out of a shared data set and writes it as that device's own .npy files, so that a demo
/// device reads only its own data, as a real one does, instead of loading the whole set to keep a share of it
/// (<c>Edge:Data:Partition</c>, whose memory grows with the shared set). The training share is the one the same
/// partition spec, device count and seed give the agent's <c>Partition</c> setting; the test share is the device's
/// contiguous slice of the test set (np.array_split).
/// </summary>
public static class DeviceShareFiles
{
    public const string TrainFeatures = "train.x.npy";
    public const string TrainLabels = "train.y.npy";
    public const string TestFeatures = "test.x.npy";
    public const string TestLabels = "test.y.npy";

    /// <summary>
    /// Writes device <paramref name="index"/>'s share of <paramref name="data"/> into <paramref name="directory"/> and
    /// returns the data-source spec that loads it (<c>npy:train.x.npy,train.y.npy[,test.x.npy,test.y.npy]</c>).
    /// </summary>
    /// <exception cref="ArgumentException">A device index outside [0, devices), or a share without samples.</exception>
    public static string Write(LoadedData data, string partition, int devices, int index, int seed, string directory)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (devices < 1)
            throw new ArgumentOutOfRangeException(nameof(devices), $"The device count must be at least 1, got {devices}.");
        if (index < 0 || index >= devices)
            throw new ArgumentOutOfRangeException(nameof(index), $"Device index {index} is not in [0, {devices}).");
        if (!data.Train.HasLabels)
            throw new ArgumentException("Only labelled (classification) data sets can be partitioned by label.", nameof(data));
        var share = Partition.Apply(partition, data.Train.Labels, devices, seed)[index];
        if (share.Length == 0)
            throw new ArgumentException($"Device {index} of {devices} gets no training sample under '{partition}' (seed {seed}); use fewer devices or another partition.", nameof(index));
        Directory.CreateDirectory(directory);
        var paths = new List<string>
        {
            Path.GetFullPath(Path.Combine(directory, TrainFeatures)),
            Path.GetFullPath(Path.Combine(directory, TrainLabels)),
        };
        WriteSamples(data.Train.Subset(share), paths[0], paths[1]);
        if (data.Test is { } test)
        {
            var (start, count) = Slice(test.Count, devices, index);
            if (count > 0)
            {
                paths.Add(Path.GetFullPath(Path.Combine(directory, TestFeatures)));
                paths.Add(Path.GetFullPath(Path.Combine(directory, TestLabels)));
                WriteSamples(test.Subset([.. Enumerable.Range(start, count)]), paths[2], paths[3]);
            }
        }
        return "npy:" + string.Join(',', paths);
    }

    /// <summary>np.array_split's part <paramref name="index"/> of <paramref name="total"/> items: the first (total mod parts) parts get one more.</summary>
    public static (int Start, int Count) Slice(int total, int parts, int index)
    {
        int size = total / parts, extra = total % parts;
        return (index * size + Math.Min(index, extra), size + (index < extra ? 1 : 0));
    }

    private static void WriteSamples(Dataset samples, string featuresPath, string labelsPath)
    {
        var features = new float[samples.Count * samples.SampleSize];
        samples.CopyFeatures(0, samples.Count, features);
        NpyArray.Write<float>(featuresPath, features, [samples.Count, .. samples.SampleShape]);
        NpyArray.Write<long>(labelsPath, samples.Labels, [samples.Count]);
    }
}
