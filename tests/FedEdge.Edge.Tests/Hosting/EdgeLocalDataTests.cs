using FedEdge.Data;

namespace FedEdge.Edge.Tests.Hosting;

public sealed class EdgeLocalDataTests
{
    private static EdgeDataOptions Demo(string source) => new()
    {
        Source = source,
        Partition = "dirichlet:0.5",
        PartitionCount = 20,
        PartitionIndex = 7,
        PartitionSeed = 3,
        MaxEvaluationSamples = 300,
    };

    private static float[] Features(Dataset data)
    {
        var x = new float[data.Count * data.SampleSize];
        data.CopyFeatures(0, data.Count, x);
        return x;
    }

    [Fact]
    public void PartitionShareOfFashionMnistIsTheShareOfTheWholeSetAndTheTestSetStopsAtTheEvaluationSamples()
    {
        var loaded = EdgeLocalData.Load(Demo("fashion-mnist"));

        var all = FashionMnist.LoadTrain(storage: FeatureStorage.Byte);
        var expected = all.Subset(Partition.Apply("dirichlet:0.5", all.Labels, 20, 3)[7]);
        Assert.Equal(expected.Labels, loaded.Train.Labels);
        Assert.Equal(Features(expected), Features(loaded.Train));
        Assert.Equal(FeatureStorage.Byte, loaded.Train.Storage);
        Assert.Equal(300, loaded.Test!.Count);
        Assert.Equal(FashionMnist.LoadTest(storage: FeatureStorage.Byte).Take(300).Labels, loaded.Test.Labels);
    }

    [Fact]
    public void DeviceFilesFromDataSplitHoldTheSameTrainingShareAsThePartitionSetting()
    {
        using var dir = new TempDirectory();
        var options = Demo("fashion-mnist");
        var spec = DeviceShareFiles.Write(DatasetSource.Load("fashion-mnist", FeatureStorage.Byte), options.Partition!, options.PartitionCount,
            options.PartitionIndex, options.PartitionSeed, dir.Path);

        var own = EdgeLocalData.Load(new EdgeDataOptions { Source = spec });
        var partitioned = EdgeLocalData.Load(options);
        Assert.Equal(partitioned.Train.Labels, own.Train.Labels);
        Assert.Equal(Features(partitioned.Train), own.Train.Features);
        Assert.Equal(500, own.Test!.Count); // the device's slice of the 10,000 test images
    }

    [Fact]
    public void PartitionIndexOutsideTheDeviceCountIsRefusedBeforeLoading()
    {
        var options = Demo("fashion-mnist:/nonexistent");
        options.PartitionIndex = 20;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => EdgeLocalData.Load(options));
        Assert.Contains("Partition index 20 is not in [0, 20)", e.Message);
    }
}
