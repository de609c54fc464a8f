namespace FedEdge.Data;

/// <summary>Kinds of data source.</summary>
public enum DatasetSourceKind
{
    FashionMnist,
    Npy,
    Csv,
}

/// <summary>A training set and, where the source has one, a test set.</summary>
public sealed record LoadedData(Dataset Train, Dataset? Test);

/// <summary>
/// A data source named on the command line (<c>--data</c>):
/// <list type="bullet">
/// <item><c>fashion-mnist</c> or <c>fashion-mnist:DIR</c>: Fashion-MNIST train and test sets (Debian's dataset-fashion-mnist).</item>
/// <item><c>npy:X.npy,Y.npy</c> or <c>npy:X.npy,Y.npy,Xtest.npy,Ytest.npy</c>: features (N × ...) and labels (int, N) or
/// float targets (N × ...); the first axis is the sample axis, the rest is the sample shape.</item>
/// <item><c>csv:train.csv</c> or <c>csv:train.csv,test.csv</c>: numeric features, label in the last column.</item>
/// </list>
/// </summary>
public sealed record DatasetSource(DatasetSourceKind Kind, IReadOnlyList<string> Paths)
{
    /// <summary>Parses a spec; throws <see cref="FormatException"/> naming the accepted forms.</summary>
    public static DatasetSource Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string s = spec.Trim();
        int colon = s.IndexOf(':');
        string kind = (colon < 0 ? s : s[..colon]).ToLowerInvariant();
        string[] paths = colon < 0
            ? []
            : s[(colon + 1)..].Split(',', StringSplitOptions.TrimEntries);
        if (paths.Any(string.IsNullOrEmpty))
        {
            throw BadSpec(spec, "a path is empty");
        }
        return kind switch
        {
            "fashion-mnist" or "fashionmnist" when paths.Length <= 1 => new DatasetSource(DatasetSourceKind.FashionMnist, paths),
            "npy" when paths.Length is 2 or 4 => new DatasetSource(DatasetSourceKind.Npy, paths),
            "npy" => throw BadSpec(spec, $"npy takes 2 or 4 paths, got {paths.Length}"),
            "csv" when paths.Length is 1 or 2 => new DatasetSource(DatasetSourceKind.Csv, paths),
            "csv" => throw BadSpec(spec, $"csv takes 1 or 2 paths, got {paths.Length}"),
            _ => throw BadSpec(spec, $"unknown source '{kind}'"),
        };
    }

    /// <summary>Loads the data.</summary>
    /// <param name="storage">For 8-bit image sources (Fashion-MNIST), <see cref="FeatureStorage.Byte"/> saves ¾ of the memory.</param>
    public LoadedData Load(FeatureStorage storage = FeatureStorage.Float32) => Kind switch
    {
        DatasetSourceKind.FashionMnist => new LoadedData(
            FashionMnist.LoadTrain(Paths.Count > 0 ? Paths[0] : null, storage),
            FashionMnist.LoadTest(Paths.Count > 0 ? Paths[0] : null, storage)),
        DatasetSourceKind.Npy => new LoadedData(
            LoadNpy(Paths[0], Paths[1]),
            Paths.Count == 4 ? LoadNpy(Paths[2], Paths[3]) : null),
        _ => new LoadedData(CsvDataset.Load(Paths[0]), Paths.Count == 2 ? CsvDataset.Load(Paths[1]) : null),
    };

    /// <summary>Parses and loads in one step.</summary>
    public static LoadedData Load(string spec, FeatureStorage storage = FeatureStorage.Float32) => Parse(spec).Load(storage);

    /// <summary>Builds a data set from a feature array (N × sample shape) and a label or target array (N or N × ...).</summary>
    public static Dataset LoadNpy(string featuresPath, string labelsPath)
    {
        var x = NpyArray.Read(featuresPath);
        var y = NpyArray.Read(labelsPath);
        if (x.Shape.Length < 2)
        {
            throw new InvalidDataException($"{featuresPath}: features need shape [N, ...], found [{string.Join(", ", x.Shape)}].");
        }
        if (y.Shape.Length < 1 || y.Shape[0] != x.Shape[0])
        {
            throw new InvalidDataException(
                $"{labelsPath}: shape [{string.Join(", ", y.Shape)}] does not match the {x.Shape[0]} samples of {featuresPath}.");
        }
        float[] features = x.ToFloat32();
        int[] sampleShape = x.Shape[1..];
        if (y.DataType is NpyDataType.Int32 or NpyDataType.Int64)
        {
            if (y.Shape.Length != 1)
            {
                throw new InvalidDataException($"{labelsPath}: integer labels need shape [N], found [{string.Join(", ", y.Shape)}].");
            }
            long[] labels = y.ToInt64();
            int bad = Array.FindIndex(labels, l => l < 0);
            if (bad >= 0)
            {
                throw new InvalidDataException($"{labelsPath}: label of sample {bad} is negative ({labels[bad]}).");
            }
            return new Dataset(features, labels, sampleShape);
        }
        int[] targetShape = y.Shape.Length == 1 ? [1] : y.Shape[1..];
        return new Dataset(features, sampleShape, y.ToFloat32(), targetShape);
    }

    private static FormatException BadSpec(string spec, string why) =>
        new($"Bad data source '{spec}' ({why}): expected 'fashion-mnist', 'npy:X.npy,Y.npy[,Xtest.npy,Ytest.npy]' or 'csv:train.csv[,test.csv]'.");
}
