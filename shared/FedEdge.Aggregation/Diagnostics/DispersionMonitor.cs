using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Diagnostics;

/// <summary>
/// Client-optima dispersion (algorithms.md §7; arXiv 2511.00469): the diameter max_{s,t} ‖x_s − x_t‖ of the last W
/// global models (how far the global model oscillates) and the mean distance from device models to the global model.
/// Keeps a ring of W models: O(W·d) memory.
/// <example>W = 3, models [0, 0], [3, 4], [1, 0]: diameter = ‖[3, 4] − [0, 0]‖ = 5.</example>
/// </summary>
public sealed class DispersionMonitor
{
    private readonly float[][] _window;
    private int _next;

    public DispersionMonitor(int dimension, int window)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(window);
        Dimension = dimension;
        _window = new float[window][];
    }

    public int Dimension { get; }

    /// <summary>W.</summary>
    public int Window => _window.Length;

    /// <summary>Models currently held (≤ W).</summary>
    public int Held { get; private set; }

    public void Observe(ReadOnlySpan<float> globalModel)
    {
        if (globalModel.Length != Dimension)
        {
            throw new ArgumentException($"Expected {Dimension} coordinates, got {globalModel.Length}.", nameof(globalModel));
        }

        var slot = _window[_next] ??= new float[Dimension];
        globalModel.CopyTo(slot);
        _next = (_next + 1) % Window;
        Held = Math.Min(Held + 1, Window);
    }

    /// <summary>The largest distance between two of the last W global models (0 with fewer than two).</summary>
    public double Diameter()
    {
        double best = 0;
        for (int s = 0; s < Held; s++)
        {
            for (int t = s + 1; t < Held; t++)
            {
                best = Math.Max(best, PairwiseDistances.SquaredDistance(_window[s], _window[t]));
            }
        }

        return Math.Sqrt(best);
    }

    /// <summary>Mean over devices of ‖x_i − x‖ for device models x_i (rows of <paramref name="deviceModels"/>).</summary>
    public static double MeanDeviceDistance(UpdateBatch deviceModels, ReadOnlySpan<float> globalModel)
    {
        ArgumentNullException.ThrowIfNull(deviceModels);
        if (globalModel.Length != deviceModels.Dimension)
        {
            throw new ArgumentException("The global model and the device models differ in dimension.", nameof(globalModel));
        }

        double sum = 0;
        for (int i = 0; i < deviceModels.Count; i++)
        {
            sum += Math.Sqrt(PairwiseDistances.SquaredDistance(deviceModels.Row(i), globalModel));
        }

        return sum / deviceModels.Count;
    }
}
