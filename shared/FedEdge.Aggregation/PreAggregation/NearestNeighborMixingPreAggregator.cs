using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.PreAggregation;

/// <summary>
/// Nearest-neighbour mixing, NNM (Allouah et al., "Fixing by Mixing: A Recipe for Optimal Byzantine ML under
/// Heterogeneity", AISTATS 2023): replace each update by the mean of its n − f nearest updates (itself included,
/// at distance 0; ties by lower index). Output has n rows; follow it with a robust rule configured with the same f.
/// <example>
/// f = 1, 1-D updates 0, 1, 10: neighbours of 0 are {0, 1} → 0.5; of 1 are {1, 0} → 0.5; of 10 are {10, 1} → 5.5.
/// </example>
/// </summary>
public sealed class NearestNeighborMixingPreAggregator : IPreAggregator
{
    public NearestNeighborMixingPreAggregator(int f)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(f);
        F = f;
    }

    public int F { get; }

    public string Name => "nnm";

    public UpdateBatch Apply(UpdateBatch updates)
    {
        ArgumentNullException.ThrowIfNull(updates);
        updates.EnsureValid();
        int n = updates.Count;
        if (F >= n)
        {
            throw new ArgumentException($"NNM mixes n − f neighbours; f = {F} is too large for n = {n}.");
        }

        var distances = PairwiseDistances.Squared(updates);
        int k = n - F;
        var coefficients = new double[n * n];
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                order[j] = j;
            }

            int row = i;
            Array.Sort(order, (a, b) =>
            {
                double da = distances[(row * n) + a], db = distances[(row * n) + b];
                return a == b ? 0 : da != db ? da.CompareTo(db) : a == row ? -1 : b == row ? 1 : a.CompareTo(b);
            });
            for (int t = 0; t < k; t++)
            {
                coefficients[(i * n) + order[t]] = 1.0 / k;
            }
        }

        var output = new float[(long)n * updates.Dimension];
        RowCombination.Combine(updates, coefficients, output);
        return new UpdateBatch(output, n, updates.Dimension);
    }
}
