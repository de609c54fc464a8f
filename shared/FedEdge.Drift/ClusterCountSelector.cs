namespace FedEdge.Drift;

/// <summary>Settings of <see cref="ClusterCountSelector"/>.</summary>
public sealed record ClusterCountOptions
{
    /// <summary>Smallest k tried (FedDAA: 2).</summary>
    public int MinClusters { get; init; } = 2;

    /// <summary>Largest k tried (FedDAA: 9); capped at n − 1 points.</summary>
    public int MaxClusters { get; init; } = 9;

    /// <summary>
    /// Hysteresis: the cluster count changes only when the best k's silhouette beats the current k's by at least this
    /// much, so that noise in the prototypes does not create and retire cluster models every time step.
    /// </summary>
    public double SwitchMargin { get; init; } = 0.05;

    /// <summary>Seed of k-means++ (fixed, so every replica of the server computes the same clusters).</summary>
    public int Seed { get; init; }

    /// <summary>k-means restarts per k.</summary>
    public int Restarts { get; init; } = 8;

    public void Validate()
    {
        if (MinClusters < 2 || MaxClusters < MinClusters)
        {
            throw new ArgumentOutOfRangeException(nameof(MinClusters), $"Cluster range [{MinClusters}, {MaxClusters}] must satisfy 2 ≤ min ≤ max.");
        }

        if (!(SwitchMargin >= 0))
        {
            throw new ArgumentOutOfRangeException(nameof(SwitchMargin), SwitchMargin, "The switch margin must be ≥ 0.");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(Restarts);
    }
}

/// <summary>A cluster-count decision: the k kept, its k-means fit (centres, device assignments) and every k's silhouette.</summary>
public sealed record ClusterCountDecision(int K, KMeansResult Clustering, IReadOnlyDictionary<int, double> Silhouettes, int BestK, bool Changed);

/// <summary>
/// FedDAA's cluster-number module (arXiv 2506.21054, §4): the server runs k-means on the devices' current
/// prototypes for every k in [2, 9] and keeps the k with the highest mean silhouette, together with its centres
/// (used by <see cref="DriftClassifier"/>). FedEdge adds hysteresis (<see cref="ClusterCountOptions.SwitchMargin"/>):
/// the current k is kept unless another k scores clearly better, and the decision is stateful across calls.
/// </summary>
public sealed class ClusterCountSelector
{
    private readonly ClusterCountOptions _options;

    public ClusterCountSelector(ClusterCountOptions? options = null)
    {
        _options = options ?? new ClusterCountOptions();
        _options.Validate();
    }

    /// <summary>The k kept by the last call (null before the first).</summary>
    public int? CurrentK { get; private set; }

    /// <summary>Chooses k for <paramref name="n"/> prototypes of dimension <paramref name="d"/> (n × d, row-major). Needs n ≥ 3.</summary>
    public ClusterCountDecision Select(ReadOnlySpan<float> prototypes, int n, int d)
    {
        if (n < _options.MinClusters + 1)
        {
            throw new ArgumentException($"Choosing between {_options.MinClusters} and {_options.MaxClusters} clusters needs at least {_options.MinClusters + 1} prototypes; got {n}.", nameof(n));
        }

        var distances = Silhouette.PairwiseDistances(prototypes, n, d);
        var maxK = Math.Min(_options.MaxClusters, n - 1);
        var fits = new Dictionary<int, KMeansResult>();
        var scores = new Dictionary<int, double>();
        var bestK = _options.MinClusters;
        for (var k = _options.MinClusters; k <= maxK; k++)
        {
            var fit = KMeans.Fit(prototypes, n, d, k, _options.Seed + k, _options.Restarts);
            fits[k] = fit;
            scores[k] = Silhouette.Score(distances, n, fit.Assignments, k);
            if (scores[k] > scores[bestK] + 1e-12)
            {
                bestK = k;
            }
        }

        var chosen = bestK;
        if (CurrentK is { } current && scores.TryGetValue(current, out var currentScore) && scores[bestK] < currentScore + _options.SwitchMargin)
        {
            chosen = current;
        }

        var changed = CurrentK != chosen;
        CurrentK = chosen;
        return new ClusterCountDecision(chosen, fits[chosen], scores, bestK, changed);
    }

    /// <summary>Restores the kept k (e.g. from a persisted cluster grain) without recomputing.</summary>
    public void Restore(int k)
    {
        if (k < _options.MinClusters || k > _options.MaxClusters)
        {
            throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be in [{_options.MinClusters}, {_options.MaxClusters}].");
        }

        CurrentK = k;
    }
}
