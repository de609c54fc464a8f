namespace FedEdge.Data.Tests;

public sealed class DatasetTests
{
    private static Dataset Small() =>
        new(Enumerable.Range(0, 4 * 6).Select(i => (float)i).ToArray(), [0, 1, 2, 1], [1, 2, 3]);

    [Fact]
    public void ExposesShapeAndZeroCopyViews()
    {
        var data = Small();
        Assert.Equal(4, data.Count);
        Assert.Equal(6, data.SampleSize);
        Assert.Equal(3, data.ClassCount);
        Assert.Equal([1, 2, 3], data.SampleShape);
        Assert.Equal([12f, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23], data.FeaturesOf(2, 2).ToArray());
        Assert.Equal([1L, 2], data.LabelsOf(1, 2).ToArray());
        Assert.Equal([1, 2, 1], data.ClassCounts());
    }

    [Fact]
    public void CopyBatchGathersShuffledSamples()
    {
        var data = Small();
        var x = new float[3 * 6];
        var y = new long[3];
        data.CopyBatch([3, 0, 3], x, y);
        Assert.Equal([18f, 19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 23], x);
        Assert.Equal([1L, 0, 1], y);
        Assert.Throws<ArgumentOutOfRangeException>(() => data.CopyBatch([4], x, y));
        Assert.Throws<ArgumentException>(() => data.CopyBatch([0, 1, 2, 3], x, new long[4]));
    }

    [Fact]
    public void SubsetCopiesInGivenOrder()
    {
        var sub = Small().Subset([2, 0]);
        Assert.Equal(2, sub.Count);
        Assert.Equal(3, sub.ClassCount);
        Assert.Equal([2L, 0], sub.Labels);
        Assert.Equal(12f, sub.Features[0]);
        Assert.Equal(0f, sub.Features[6]);
    }

    [Fact]
    public void RejectsInconsistentConstruction()
    {
        Assert.Throws<ArgumentException>(() => new Dataset(new float[10], [0, 1], [3]));
        Assert.Throws<ArgumentException>(() => new Dataset(new float[6], [0, 1, 2], [3]));
        Assert.Throws<ArgumentException>(() => new Dataset(new float[6], [0, 5], [3], classCount: 3));
        Assert.Throws<ArgumentException>(() => new Dataset(new float[6], [0, -1], [3]));
    }

    [Fact]
    public void ByteStorageRefusesFloatViewsButCopies()
    {
        var data = new Dataset(new byte[] { 0, 51, 255, 102 }, 255f, [0, 1], [2]);
        Assert.Throws<InvalidOperationException>(() => data.FeaturesOf(0, 1).ToArray());
        var x = new float[4];
        data.CopyRange(0, 2, x, new long[2]);
        Assert.Equal([0f, 51f / 255f, 1f, 102f / 255f], x);
    }

    [Fact]
    public void RotatingBy90DegreesMatchesNumpyRot90()
    {
        // 2 channels of a 3×4 image; np.rot90 turns counter-clockwise, as Rotate does. A 3×4 image turned by 90°
        // does not fit a 3×4 frame, so compare on a square 4×4 image.
        var pixels = Enumerable.Range(0, 2 * 16).Select(i => (float)i).ToArray();
        var data = new Dataset(pixels, [0], [2, 4, 4]);
        var rotated = DataTransforms.Rotate(data, 90);
        string output = SystemPython.Run("""
            import numpy as np
            a = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
            print(' '.join(str(int(v)) for v in np.rot90(a, 1, axes=(1, 2)).ravel()))
            """);
        var expected = output.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(float.Parse).ToArray();
        Assert.Equal(expected.Length, rotated.Features.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], rotated.Features[i], 4);
        }
        var full = DataTransforms.Rotate(data, 360);
        for (int i = 0; i < pixels.Length; i++)
        {
            Assert.Equal(pixels[i], full.Features[i], 3);
        }
    }

    [Fact]
    public void RemapsLabels()
    {
        var data = Small();
        Assert.Equal([2L, 1, 0, 1], DataTransforms.RemapLabels(data, DataTransforms.ReverseMap(3)).Labels);
        Assert.Equal([2L, 0, 1, 0], DataTransforms.RemapLabels(data, DataTransforms.ShiftMap(3, 2)).Labels);
        Assert.Equal(data.Features, DataTransforms.RemapLabels(data, DataTransforms.ShiftMap(3, 1)).Features);
    }
}
