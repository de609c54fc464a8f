using System.Globalization;
using System.Text.RegularExpressions;
using FedEdge.Data;

namespace FedEdge.Edge.Drift;

/// <summary>
/// Windows from a directory of numbered npy pairs, <c>window-0003.X.npy</c> + <c>window-0003.Y.npy</c> (optionally
/// <c>window-0003.Xtest.npy</c> + <c>window-0003.Ytest.npy</c>), written by whatever collects the device's data. Each
/// poll picks up the highest-numbered complete window; the previous window is the highest-numbered one below it. Write a
/// window's files under another name and rename them into place, Y last: a window counts once its Y file exists.
/// </summary>
public sealed partial class DirectoryDataWindows : IEdgeDataWindows
{
    private readonly string _directory;
    private readonly Lock _lock = new();
    private EdgeWindowPair? _pair;

    public DirectoryDataWindows(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"Data window directory '{directory}' does not exist (Edge:Data:WindowDirectory).");
        _directory = directory;
        if (CompleteWindows().Count == 0)
            throw new InvalidOperationException($"Data window directory '{directory}' holds no complete window (window-N.X.npy with window-N.Y.npy).");
        Poll();
    }

    /// <summary>The complete windows (both files present): number → the number as spelled in the file names, ascending.</summary>
    public SortedList<long, string> CompleteWindows()
    {
        var found = new SortedList<long, string>();
        foreach (var path in Directory.EnumerateFiles(_directory, "window-*.Y.npy"))
        {
            var match = WindowFile().Match(Path.GetFileName(path));
            if (match.Success && long.TryParse(match.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var index)
                && File.Exists(FilePath(match.Groups[1].Value, "X")))
            {
                found[index] = match.Groups[1].Value;
            }
        }
        return found;
    }

    public EdgeWindowPair Poll()
    {
        lock (_lock)
        {
            var windows = CompleteWindows();
            if (windows.Count == 0 || (_pair is not null && windows.Keys[^1] <= _pair.Current.Index))
                return _pair!;
            var current = Load(windows.Keys[^1], windows.Values[^1]);
            EdgeDataWindow? previous = null;
            if (windows.Count > 1)
            {
                var (index, number) = (windows.Keys[^2], windows.Values[^2]);
                previous = _pair?.Current.Index == index ? _pair.Current : Load(index, number);
            }
            _pair = new EdgeWindowPair(current, previous);
            return _pair;
        }
    }

    private EdgeDataWindow Load(long index, string number)
    {
        var train = DatasetSource.LoadNpy(FilePath(number, "X"), FilePath(number, "Y"));
        Dataset? test = null;
        if (File.Exists(FilePath(number, "Xtest")) && File.Exists(FilePath(number, "Ytest")))
            test = DatasetSource.LoadNpy(FilePath(number, "Xtest"), FilePath(number, "Ytest"));
        return new EdgeDataWindow(index, train, test);
    }

    private string FilePath(string number, string part) => Path.Combine(_directory, $"window-{number}.{part}.npy");

    [GeneratedRegex(@"^window-(\d{1,18})\.Y\.npy$", RegexOptions.CultureInvariant)]
    private static partial Regex WindowFile();
}
