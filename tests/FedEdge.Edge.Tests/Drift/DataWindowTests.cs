using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge.Drift;
using FedEdge.Edge.Tests.Agent;

namespace FedEdge.Edge.Tests.Drift;

public sealed class DataWindowTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_fixed_data_set_is_one_window_that_never_changes()
    {
        var data = TestFederation.Data(20, seed: 1);
        var windows = new FixedDataWindow(new EdgeLocalData(data));
        var pair = windows.Poll();
        Assert.Equal(0, pair.Current.Index);
        Assert.Null(pair.Previous);
        Assert.Same(data, pair.TrainingData(TrainingWindow.PreviousAndCurrent));
        Assert.Same(pair, windows.Poll());
    }

    [Fact]
    public void Advancing_in_memory_keeps_one_previous_window_and_concatenates_it_for_training()
    {
        var first = TestFederation.Data(20, seed: 1);
        var second = TestFederation.Data(30, seed: 2);
        var third = TestFederation.Data(40, seed: 3);
        var windows = new InMemoryDataWindows(first);
        Assert.Equal(1, windows.Advance(second));
        Assert.Equal(2, windows.Advance(third));
        var pair = windows.Poll();
        Assert.Equal(2, pair.Current.Index);
        Assert.Same(second, pair.Previous!.Train);
        Assert.Same(third, pair.TrainingData(TrainingWindow.CurrentOnly));

        var both = pair.TrainingData(TrainingWindow.PreviousAndCurrent);
        Assert.Equal(70, both.Count);
        Assert.Equal([.. second.Labels, .. third.Labels], both.Labels);
        Assert.Equal(second.Features.AsSpan(0, TestFederation.Features).ToArray(), both.FeaturesOf(0, 1).ToArray());
        Assert.Equal(third.Features.AsSpan(0, TestFederation.Features).ToArray(), both.FeaturesOf(30, 1).ToArray());
        Assert.Same(both, pair.TrainingData(TrainingWindow.PreviousAndCurrent)); // built once per pair
    }

    [Fact]
    public void A_window_directory_is_picked_up_in_number_order_once_both_files_exist()
    {
        Write(2, TestFederation.Data(10, seed: 2));
        Write(10, TestFederation.Data(11, seed: 10));
        var windows = new DirectoryDataWindows(_dir.Path);
        var pair = windows.Poll();
        Assert.Equal(10, pair.Current.Index); // numeric, not lexical order
        Assert.Equal(11, pair.Current.Train.Count);
        Assert.Equal(2, pair.Previous!.Index);

        // A window whose Y file is not there yet does not count.
        var next = TestFederation.Data(12, seed: 11);
        NpyArray.Write(_dir.Combine("window-0011.X.npy"), next.Features.AsSpan(), [next.Count, TestFederation.Features]);
        Assert.Same(pair, windows.Poll());
        NpyArray.Write(_dir.Combine("window-0011.Y.npy"), next.Labels.AsSpan(), [next.Count]);
        var advanced = windows.Poll();
        Assert.Equal(11, advanced.Current.Index);
        Assert.Same(pair.Current, advanced.Previous); // the old current window is not loaded again
        Assert.Equal(next.Labels, advanced.Current.Train.Labels);
    }

    [Fact]
    public void An_empty_window_directory_is_refused_with_its_path()
    {
        var error = Assert.Throws<InvalidOperationException>(() => new DirectoryDataWindows(_dir.Path));
        Assert.Contains(_dir.Path, error.Message);
    }

    private void Write(int number, Dataset data)
    {
        NpyArray.Write(_dir.Combine($"window-{number:D4}.X.npy"), data.Features.AsSpan(), [data.Count, TestFederation.Features]);
        NpyArray.Write(_dir.Combine($"window-{number:D4}.Y.npy"), data.Labels.AsSpan(), [data.Count]);
    }
}
