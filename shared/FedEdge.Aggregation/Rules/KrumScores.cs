using FedEdge.Aggregation.Kernels;

namespace FedEdge.Aggregation.Rules;

/// <summary>
/// Krum scores (Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent",
/// NeurIPS 2017): score_i = Σ of the squared distances from Δ_i to its n − f − 2 nearest other updates.
/// FedEdge uses the paper's n − f − 2 neighbours (ByzFL uses n − f); this needs n ≥ 2f + 3.
/// </summary>
public static class KrumScores
{
    /// <summary>The neighbour count n − f − 2.</summary>
    public static int NeighbourCount(int n, int f) => n - f - 2;

    /// <summary>Throws unless n ≥ 2f + 3, the condition of Blanchard et al.'s guarantee.</summary>
    public static void RequireEnoughUpdates(string rule, int n, int f)
    {
        if (n < (2 * f) + 3)
        {
            throw new ArgumentException($"{rule} needs n ≥ 2f + 3 updates; f = {f} is too large for n = {n}.");
        }
    }

    /// <summary>Scores from a row-major n×n squared-distance matrix.</summary>
    public static double[] FromSquaredDistances(ReadOnlySpan<double> squaredDistances, int n, int f)
    {
        int k = NeighbourCount(n, f);
        var scores = new double[n];
        Span<double> others = n <= 256 ? stackalloc double[n - 1] : new double[n - 1];
        for (int i = 0; i < n; i++)
        {
            int o = 0;
            for (int j = 0; j < n; j++)
            {
                if (j != i)
                {
                    others[o++] = squaredDistances[(i * n) + j];
                }
            }

            others.Sort();
            double score = 0;
            for (int t = 0; t < k; t++)
            {
                score += others[t];
            }

            scores[i] = score;
        }

        return scores;
    }

    /// <summary>Scores of a batch.</summary>
    public static double[] Compute(UpdateBatch updates, int f) =>
        FromSquaredDistances(PairwiseDistances.Squared(updates), updates.Count, f);

    /// <summary>Indices of the m lowest scores, ties broken by the lower index (deterministic).</summary>
    public static int[] Lowest(double[] scores, int m)
    {
        var order = new int[scores.Length];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        Array.Sort(order, (a, b) => scores[a] != scores[b] ? scores[a].CompareTo(scores[b]) : a.CompareTo(b));
        return order[..m];
    }
}
