namespace FedEdge.Data.Tests;

public class ImagePatchesTests
{
    [Fact]
    public void APatchIsCentredOnItsOwnMean()
    {
        // One 2 × 2 image, a 2 × 2 patch: [1, 2, 3, 6] − 3 = [−2, −1, 0, 3].
        var images = new Dataset(new float[] { 1, 2, 3, 6 }, [0], [1, 2, 2]);
        var patches = ImagePatches.Extract(images, [0], side: 2, count: 3, seed: 1);
        Assert.Equal(new float[] { -2, -1, 0, 3, -2, -1, 0, 3, -2, -1, 0, 3 }, patches);
    }

    [Fact]
    public void FlatPatchesAreSkippedAndTheAttemptsAreBounded()
    {
        var flat = new Dataset(Enumerable.Repeat(0.5f, 16).ToArray(), [0], [1, 4, 4]);
        Assert.Empty(ImagePatches.Extract(flat, [0], side: 2, count: 5, seed: 1));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ImagePatches.Extract(flat, [0], side: 5, count: 1, seed: 1));
        Assert.Contains("1..4", e.Message);
    }
}
