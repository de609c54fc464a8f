namespace FedEdge.Data;

/// <summary>
/// Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): 28×28 grey-scale images of 10 clothing classes,
/// 60,000 for training and 10,000 for testing, read from Debian's <c>dataset-fashion-mnist</c> package
/// (gzip-compressed IDX files). Pixels are scaled to [0, 1] (pixel / 255); samples have shape [1, 28, 28].
/// </summary>
public static class FashionMnist
{
    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>Number of classes (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot).</summary>
    public const int ClassCount = 10;

    /// <summary>Class names in label order.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>The 60,000 training images.</summary>
    /// <param name="directory">Directory holding the IDX files; null for <see cref="DefaultDirectory"/>.</param>
    /// <param name="storage"><see cref="FeatureStorage.Byte"/> keeps a quarter of the memory (47 MB instead of 188 MB).</param>
    public static Dataset LoadTrain(string? directory = null, FeatureStorage storage = FeatureStorage.Float32) =>
        Load(directory, "train", storage, select: null);

    /// <summary>
    /// The training images at the rows <paramref name="select"/> picks from all 60,000 labels (a device's share), in
    /// that order, read without holding the other images: the memory is that of the share.
    /// </summary>
    public static Dataset LoadTrain(string? directory, FeatureStorage storage, Func<long[], int[]> select)
    {
        ArgumentNullException.ThrowIfNull(select);
        return Load(directory, "train", storage, select);
    }

    /// <summary>The 10,000 test images.</summary>
    public static Dataset LoadTest(string? directory = null, FeatureStorage storage = FeatureStorage.Float32) =>
        Load(directory, "t10k", storage, select: null);

    /// <summary>The first <paramref name="count"/> test images (all when there are fewer), read without holding the others.</summary>
    public static Dataset LoadTest(string? directory, FeatureStorage storage, int count) =>
        Load(directory, "t10k", storage, labels => [.. Enumerable.Range(0, Math.Clamp(count, 0, labels.Length))]);

    private static Dataset Load(string? directory, string prefix, FeatureStorage storage, Func<long[], int[]>? select)
    {
        directory ??= DefaultDirectory;
        string imagesPath = FindFile(directory, $"{prefix}-images-idx3-ubyte");
        string labelsPath = FindFile(directory, $"{prefix}-labels-idx1-ubyte");

        byte[] rawLabels = IdxFile.ReadBytes(labelsPath, out int[] labelDims);
        if (labelDims.Length != 1)
        {
            throw new InvalidDataException($"{labelsPath}: expected labels of shape [N], found [{string.Join(", ", labelDims)}].");
        }
        var labels = new long[rawLabels.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            if (rawLabels[i] >= ClassCount)
            {
                throw new InvalidDataException($"{labelsPath}: label {rawLabels[i]} of sample {i} is not a Fashion-MNIST class (0..9).");
            }
            labels[i] = rawLabels[i];
        }
        int[]? rows = select?.Invoke(labels);
        byte[] pixels = rows is null
            ? IdxFile.ReadBytes(imagesPath, out int[] imageDims)
            : IdxFile.ReadRows(imagesPath, rows, out imageDims);
        if (imageDims.Length != 3 || imageDims[1] != 28 || imageDims[2] != 28)
        {
            throw new InvalidDataException($"{imagesPath}: expected images of shape [N, 28, 28], found [{string.Join(", ", imageDims)}].");
        }
        if (labelDims[0] != imageDims[0])
        {
            throw new InvalidDataException(
                $"{labelsPath}: expected {imageDims[0]} labels to match {imagesPath}, found shape [{string.Join(", ", labelDims)}].");
        }
        if (rows is not null)
        {
            labels = Array.ConvertAll(rows, r => labels[r]);
        }
        var bytes = new Dataset(pixels, 255f, labels, [1, 28, 28], ClassCount);
        return bytes.WithStorage(storage);
    }

    private static string FindFile(string directory, string name)
    {
        foreach (string candidate in new[] { name + ".gz", name })
        {
            string path = Path.Combine(directory, candidate);
            if (File.Exists(path))
            {
                return path;
            }
        }
        throw new FileNotFoundException(
            $"Fashion-MNIST file {name}.gz not found in {directory}. Install Debian's dataset-fashion-mnist package " +
            "(sudo apt-get install dataset-fashion-mnist, or run scripts/install-deps.sh) or pass the directory that holds the IDX files.",
            Path.Combine(directory, name + ".gz"));
    }
}
