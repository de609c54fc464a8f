using System.IO.Compression;

namespace FedEdge.Data.Tests;

public sealed class FashionMnistTests
{
    [Fact]
    public void TrainSetHas60000ImagesWith6000PerClass()
    {
        var train = FashionMnist.LoadTrain();
        Assert.Equal(60000, train.Count);
        Assert.Equal([1, 28, 28], train.SampleShape);
        Assert.Equal(784, train.SampleSize);
        Assert.Equal(10, train.ClassCount);
        Assert.All(train.ClassCounts(), c => Assert.Equal(6000, c));
        Assert.InRange(train.Features.Min(), 0f, 0f);
        Assert.Equal(1f, train.Features.Max());
    }

    [Fact]
    public void TestSetHas10000ImagesWith1000PerClass()
    {
        var test = FashionMnist.LoadTest(storage: FeatureStorage.Byte);
        Assert.Equal(10000, test.Count);
        Assert.Equal(FeatureStorage.Byte, test.Storage);
        Assert.All(test.ClassCounts(), c => Assert.Equal(1000, c));
    }

    [Fact]
    public void PixelsAndLabelsMatchNumpyReadingOfTheSameFiles()
    {
        // Reference: the IDX files decoded by numpy, pixel / 255 in float32 (what PyTorch's ToTensor gives).
        string output = SystemPython.Run("""
            import gzip, numpy as np
            d = '/usr/share/datasets/fashion-mnist/'
            x = np.frombuffer(gzip.open(d + 't10k-images-idx3-ubyte.gz').read(), np.uint8, offset=16).reshape(-1, 784)
            y = np.frombuffer(gzip.open(d + 't10k-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
            f = x.astype(np.float32) / np.float32(255)
            print(int(y[0]), int(y[1234]), int(y[9999]), repr(float(f[1234].sum())), repr(float(f[0, 400])))
            """);
        var parts = output.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var test = FashionMnist.LoadTest(storage: FeatureStorage.Byte);
        Assert.Equal(long.Parse(parts[0]), test.Labels[0]);
        Assert.Equal(long.Parse(parts[1]), test.Labels[1234]);
        Assert.Equal(long.Parse(parts[2]), test.Labels[9999]);
        var x = new float[784];
        var y = new long[1];
        test.CopyBatch([1234], x, y);
        Assert.Equal(double.Parse(parts[3]), x.Select(v => (double)v).Sum(), 3);
        test.CopyBatch([0], x, y);
        Assert.Equal(float.Parse(parts[4]), x[400]);
    }

    [Fact]
    public void ByteAndFloatStorageGiveIdenticalBatches()
    {
        var bytes = FashionMnist.LoadTest(storage: FeatureStorage.Byte);
        var floats = bytes.WithStorage(FeatureStorage.Float32);
        int[] indices = [9999, 3, 512, 3];
        var xb = new float[4 * 784];
        var xf = new float[4 * 784];
        var yb = new long[4];
        var yf = new long[4];
        bytes.CopyBatch(indices, xb, yb);
        floats.CopyBatch(indices, xf, yf);
        Assert.Equal(xf, xb);
        Assert.Equal(yf, yb);
        Assert.Equal(floats.FeaturesOf(512, 1).ToArray(), xf.AsSpan(2 * 784, 784).ToArray());
    }

    [Fact]
    public void MissingFilesNameTheDebianPackage()
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<FileNotFoundException>(() => FashionMnist.LoadTrain(dir.Path));
        Assert.Contains("dataset-fashion-mnist", e.Message);
        Assert.Contains("train-images-idx3-ubyte", e.Message);
    }

    [Fact]
    public void BadMagicNumberIsRejected()
    {
        using var dir = new TempDirectory();
        WriteGz(dir.Combine("train-images-idx3-ubyte.gz"), [0x12, 0x34, 0x08, 0x03, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]);
        WriteGz(dir.Combine("train-labels-idx1-ubyte.gz"), [0, 0, 0x08, 0x01, 0, 0, 0, 1, 3]);
        var e = Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTrain(dir.Path));
        Assert.Contains("magic", e.Message);
    }

    [Fact]
    public void TruncatedDataAndMismatchedCountsAreRejected()
    {
        using var dir = new TempDirectory();
        // Header says 2 images, data holds one.
        var header = new byte[] { 0, 0, 0x08, 0x03, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28 };
        WriteGz(dir.Combine("train-images-idx3-ubyte.gz"), [.. header, .. new byte[784]]);
        WriteGz(dir.Combine("train-labels-idx1-ubyte.gz"), [0, 0, 0x08, 0x01, 0, 0, 0, 2, 3, 4]);
        var e = Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTrain(dir.Path));
        Assert.Contains("truncated", e.Message);

        header[7] = 1;
        WriteGz(dir.Combine("train-images-idx3-ubyte.gz"), [.. header, .. new byte[784]]);
        e = Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTrain(dir.Path));
        Assert.Contains("expected 1 labels", e.Message);

        WriteGz(dir.Combine("train-labels-idx1-ubyte.gz"), [0, 0, 0x08, 0x01, 0, 0, 0, 1, 12]);
        e = Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTrain(dir.Path));
        Assert.Contains("label 12", e.Message);
    }

    [Fact]
    public void ShareReadByRowsIsTheSubsetOfTheWholeSetInTheSameOrder()
    {
        var all = FashionMnist.LoadTrain(storage: FeatureStorage.Byte);
        int[] rows = [59999, 3, 0, 31000, 3];
        long[]? seen = null;
        var share = FashionMnist.LoadTrain(null, FeatureStorage.Byte, labels => { seen = labels; return rows; });
        Assert.Equal(all.Labels, seen);
        var expected = all.Subset(rows);
        Assert.Equal(expected.Labels, share.Labels);
        var (x, y) = (new float[rows.Length * 784], new float[rows.Length * 784]);
        expected.CopyFeatures(0, rows.Length, x);
        share.CopyFeatures(0, rows.Length, y);
        Assert.Equal(x, y);

        var firstTest = FashionMnist.LoadTest(null, FeatureStorage.Byte, 100);
        Assert.Equal(FashionMnist.LoadTest(storage: FeatureStorage.Byte).Take(100).Labels, firstTest.Labels);
        Assert.Equal(10000, FashionMnist.LoadTest(null, FeatureStorage.Byte, 20000).Count);
    }

    [Fact]
    public void RowOutsideTheFileIsRejectedNamingIt()
    {
        using var dir = new TempDirectory();
        WriteGz(dir.Combine("train-images-idx3-ubyte.gz"), [0, 0, 0x08, 0x03, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28, .. new byte[2 * 784]]);
        WriteGz(dir.Combine("train-labels-idx1-ubyte.gz"), [0, 0, 0x08, 0x01, 0, 0, 0, 2, 3, 4]);
        Assert.Equal([4L, 3L], FashionMnist.LoadTrain(dir.Path, FeatureStorage.Byte, _ => [1, 0]).Labels);
        var e = Assert.Throws<InvalidDataException>(() => FashionMnist.LoadTrain(dir.Path, FeatureStorage.Byte, _ => [0, 2]));
        Assert.Contains("row 2 requested, but the file has 2 rows", e.Message);
    }

    private static void WriteGz(string path, byte[] content)
    {
        using var file = File.Create(path);
        using var gz = new GZipStream(file, CompressionLevel.Fastest);
        gz.Write(content);
    }
}
