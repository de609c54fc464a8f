namespace FedEdge.Data.Tests;

public sealed class DeviceShareFilesTests
{
    // 200 training samples of shape [1, 2, 2] whose features encode the sample index, 10 classes; 25 test samples.
    private static LoadedData Data()
    {
        static Dataset Make(int n, int offset) => new(
            [.. Enumerable.Range(0, n * 4).Select(i => (float)(offset + i / 4) + (i % 4) * 0.25f)],
            [.. Enumerable.Range(0, n).Select(i => (long)((i * 7) % 10))],
            [1, 2, 2], 10);
        return new LoadedData(Make(200, 0), Make(25, 1000));
    }

    [Theory]
    [InlineData("iid", 4, 1)]
    [InlineData("dirichlet:0.5", 5, 3)]
    [InlineData("shards:2", 5, 0)]
    public void WrittenShareIsTheAgentsPartitionShareAndLoadsBack(string partition, int devices, int index)
    {
        using var dir = new TempDirectory();
        var data = Data();
        var spec = DeviceShareFiles.Write(data, partition, devices, index, seed: 9, dir.Path);

        var loaded = DatasetSource.Load(spec);
        var expected = data.Train.Subset(Partition.Apply(partition, data.Train.Labels, devices, 9)[index]);
        Assert.Equal(expected.Count, loaded.Train.Count);
        Assert.Equal(expected.Features, loaded.Train.Features);
        Assert.Equal(expected.Labels, loaded.Train.Labels);
        Assert.Equal([1, 2, 2], loaded.Train.SampleShape);

        // The test set is split in contiguous slices: 25 samples among the devices, the first ones one larger.
        var (start, count) = DeviceShareFiles.Slice(25, devices, index);
        Assert.Equal(count, loaded.Test!.Count);
        Assert.Equal(1000f + start, loaded.Test.Features[0]);
    }

    [Fact]
    public void TestSlicesCoverTheTestSetOnce()
    {
        var slices = Enumerable.Range(0, 7).Select(i => DeviceShareFiles.Slice(25, 7, i)).ToArray();
        Assert.Equal(Enumerable.Range(0, 25), slices.SelectMany(s => Enumerable.Range(s.Start, s.Count)));
    }

    [Theory]
    [InlineData(4, 4)]
    [InlineData(4, -1)]
    [InlineData(0, 0)]
    public void BadDeviceIndexOrCountIsRefusedBeforeAnythingIsWritten(int devices, int index)
    {
        using var dir = new TempDirectory();
        var target = Path.Combine(dir.Path, "share");
        var e = Assert.ThrowsAny<ArgumentException>(() => DeviceShareFiles.Write(Data(), "iid", devices, index, 0, target));
        Assert.Contains(devices < 1 ? "device count" : $"Device index {index}", e.Message);
        Assert.False(Directory.Exists(target));
    }
}
