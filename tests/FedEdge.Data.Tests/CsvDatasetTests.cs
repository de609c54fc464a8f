namespace FedEdge.Data.Tests;

public sealed class CsvDatasetTests
{
    [Fact]
    public void LoadsNumericCsvWithHeaderAndLabelInLastColumn()
    {
        using var dir = new TempDirectory();
        string path = dir.Combine("data.csv");
        File.WriteAllText(path, "a,b,c,label\n1.5,2,3,0\n-4,5e-1,6,2\n7,8,9,1\n");
        var data = CsvDataset.Load(path);
        Assert.Equal(3, data.Count);
        Assert.Equal([3], data.SampleShape);
        Assert.Equal(3, data.ClassCount);
        Assert.Equal([1.5f, 2, 3, -4, 0.5f, 6, 7, 8, 9], data.Features);
        Assert.Equal([0L, 2, 1], data.Labels);
    }

    [Fact]
    public void LabelColumnIsConfigurableAndClassNamesAreMapped()
    {
        using var dir = new TempDirectory();
        string path = dir.Combine("iris.csv");
        File.WriteAllText(path, "virginica;6.3;3.3\nsetosa;5.1;3.5\nversicolor;7.0;3.2\nsetosa;4.9;3.0\n");
        var data = CsvDataset.Load(path, new CsvOptions { LabelColumn = 0, Separator = ';' });
        Assert.Equal(4, data.Count);
        Assert.Equal([2L, 0, 1, 0], data.Labels);
        Assert.Equal([6.3f, 3.3f, 5.1f, 3.5f, 7.0f, 3.2f, 4.9f, 3.0f], data.Features);
    }

    [Fact]
    public void NonNumericFeatureIsAClearError()
    {
        using var dir = new TempDirectory();
        string path = dir.Combine("bad.csv");
        File.WriteAllText(path, "1,2,0\n3,oops,1\n");
        var e = Assert.Throws<InvalidDataException>(() => CsvDataset.Load(path, new CsvOptions { HasHeader = false }));
        Assert.Contains("row 2", e.Message);
        Assert.Contains("feature 2", e.Message);
    }

    [Fact]
    public void DatasetSourceLoadsCsvAndNpy()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Combine("train.csv"), "1,2,1\n3,4,0\n");
        File.WriteAllText(dir.Combine("test.csv"), "5,6,1\n");
        var csv = DatasetSource.Load($"csv:{dir.Combine("train.csv")},{dir.Combine("test.csv")}");
        Assert.Equal(2, csv.Train.Count);
        Assert.Equal(1, csv.Test!.Count);

        NpyArray.Write<double>(dir.Combine("x.npy"), [1, 2, 3, 4, 5, 6], [3, 2]);
        NpyArray.Write<int>(dir.Combine("y.npy"), [0, 4, 1], [3]);
        var npy = DatasetSource.Load($"npy:{dir.Combine("x.npy")},{dir.Combine("y.npy")}");
        Assert.Null(npy.Test);
        Assert.Equal([2], npy.Train.SampleShape);
        Assert.Equal(5, npy.Train.ClassCount);
        Assert.Equal([3f, 4f], npy.Train.FeaturesOf(1, 1).ToArray());

        NpyArray.Write<float>(dir.Combine("t.npy"), [0.5f, 1.5f, 2.5f], [3]);
        var regression = DatasetSource.LoadNpy(dir.Combine("x.npy"), dir.Combine("t.npy"));
        Assert.False(regression.HasLabels);
        Assert.Equal(1, regression.TargetSize);
        Assert.Equal([1.5f], regression.TargetsOf(1, 1).ToArray());

        NpyArray.Write<int>(dir.Combine("short.npy"), [0, 1], [2]);
        Assert.Throws<InvalidDataException>(() => DatasetSource.LoadNpy(dir.Combine("x.npy"), dir.Combine("short.npy")));
    }

    [Theory]
    [InlineData("fashion-mnist", DatasetSourceKind.FashionMnist, 0)]
    [InlineData("fashion-mnist:/data/fm", DatasetSourceKind.FashionMnist, 1)]
    [InlineData("npy:a.npy,b.npy", DatasetSourceKind.Npy, 2)]
    [InlineData("NPY:a.npy, b.npy,c.npy,d.npy", DatasetSourceKind.Npy, 4)]
    [InlineData("csv:x.csv", DatasetSourceKind.Csv, 1)]
    public void ParsesSpecs(string spec, DatasetSourceKind kind, int paths)
    {
        var source = DatasetSource.Parse(spec);
        Assert.Equal(kind, source.Kind);
        Assert.Equal(paths, source.Paths.Count);
    }

    [Theory]
    [InlineData("mnist")]
    [InlineData("npy:a.npy")]
    [InlineData("npy:a.npy,,b.npy")]
    [InlineData("csv:")]
    [InlineData("csv:a,b,c")]
    public void RejectsBadSpecsNamingTheForms(string spec)
    {
        var e = Assert.Throws<FormatException>(() => DatasetSource.Parse(spec));
        Assert.Contains("npy:X.npy,Y.npy", e.Message);
        Assert.Contains(spec, e.Message);
    }
}
