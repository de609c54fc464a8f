using System.Numerics.Tensors;

namespace FedEdge.Drift;

/// <summary>Result of <see cref="KMeans.Fit"/>: k centres (k × d, row-major), the centre of each point, and the inertia Σ‖x − c(x)‖².</summary>
public sealed record KMeansResult(int K, int Dimension, float[] Centres, int[] Assignments, double Inertia)
{
    public ReadOnlySpan<float> Centre(int c) => Centres.AsSpan(c * Dimension, Dimension);
}

/// <summary>
/// Lloyd's k-means with k-means++ seeding (Arthur &amp; Vassilvitskii, SODA 2007) and the best of several seeded
/// restarts. FedDAA's server clusters a few dozen device prototypes of a few hundred values for each k = 2..9 every
/// time step; a small deterministic implementation (fixed seed → same centres on every silo, no MLContext/IDataView
/// per call) is simpler and faster at that size than ML.NET's KMeansTrainer, and it returns the centres the drift
/// classifier needs directly.
/// </summary>
public static class KMeans
{
    /// <summary>Clusters <paramref name="n"/> points of dimension <paramref name="d"/> (points: n × d, row-major).</summary>
    public static KMeansResult Fit(ReadOnlySpan<float> points, int n, int d, int k, int seed = 0, int restarts = 8, int maxIterations = 100)
    {
        if (n <= 0 || d <= 0 || points.Length != n * d)
        {
            throw new ArgumentException($"{n} points of dimension {d} need {n * d} values; got {points.Length}.", nameof(points));
        }

        if (k < 1 || k > n)
        {
            throw new ArgumentOutOfRangeException(nameof(k), $"k = {k} must be in [1, {n}] for {n} points.");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(restarts);
        KMeansResult? best = null;
        var random = new Random(seed);
        for (var attempt = 0; attempt < restarts; attempt++)
        {
            var result = FitOnce(points, n, d, k, random, maxIterations);
            if (best is null || result.Inertia < best.Inertia - 1e-9)
            {
                best = result;
            }
        }

        return best!;
    }

    private static KMeansResult FitOnce(ReadOnlySpan<float> points, int n, int d, int k, Random random, int maxIterations)
    {
        var centres = new float[k * d];
        var nearest = new float[n];

        // k-means++: first centre uniform, each next one with probability ∝ squared distance to the nearest chosen centre.
        points.Slice(random.Next(n) * d, d).CopyTo(centres);
        for (var i = 0; i < n; i++)
        {
            nearest[i] = Prototype.SquaredDistance(points.Slice(i * d, d), centres.AsSpan(0, d));
        }

        for (var c = 1; c < k; c++)
        {
            var total = 0.0;
            foreach (var v in nearest)
            {
                total += v;
            }

            var pick = 0;
            if (total > 0)
            {
                var target = random.NextDouble() * total;
                var cumulative = 0.0;
                for (pick = 0; pick < n - 1; pick++)
                {
                    cumulative += nearest[pick];
                    if (cumulative >= target)
                    {
                        break;
                    }
                }
            }
            else
            {
                pick = random.Next(n); // all points coincide with chosen centres: any point will do
            }

            var centre = centres.AsSpan(c * d, d);
            points.Slice(pick * d, d).CopyTo(centre);
            for (var i = 0; i < n; i++)
            {
                nearest[i] = Math.Min(nearest[i], Prototype.SquaredDistance(points.Slice(i * d, d), centre));
            }
        }

        var assignments = new int[n];
        var sizes = new int[k];
        double inertia = 0;
        for (var iteration = 0; iteration < maxIterations; iteration++)
        {
            var changed = Assign(points, n, d, centres, k, assignments, out inertia) || iteration == 0;
            if (!changed)
            {
                break;
            }

            Array.Clear(centres);
            Array.Clear(sizes);
            for (var i = 0; i < n; i++)
            {
                var centre = centres.AsSpan(assignments[i] * d, d);
                TensorPrimitives.Add(centre, points.Slice(i * d, d), centre);
                sizes[assignments[i]]++;
            }

            for (var c = 0; c < k; c++)
            {
                var centre = centres.AsSpan(c * d, d);
                if (sizes[c] > 0)
                {
                    TensorPrimitives.Multiply(centre, 1f / sizes[c], centre);
                }
                else
                {
                    // Empty cluster: restart it at the point farthest from its centre (standard repair).
                    var far = FarthestPoint(points, n, d, centres, assignments);
                    points.Slice(far * d, d).CopyTo(centre);
                }
            }
        }

        Assign(points, n, d, centres, k, assignments, out inertia);
        return new KMeansResult(k, d, centres, assignments, inertia);
    }

    /// <summary>Assigns each point to its nearest centre; true when any assignment changed.</summary>
    internal static bool Assign(ReadOnlySpan<float> points, int n, int d, ReadOnlySpan<float> centres, int k, Span<int> assignments, out double inertia)
    {
        var changed = false;
        inertia = 0;
        for (var i = 0; i < n; i++)
        {
            var point = points.Slice(i * d, d);
            var best = 0;
            var bestDistance = float.PositiveInfinity;
            for (var c = 0; c < k; c++)
            {
                var distance = Prototype.SquaredDistance(point, centres.Slice(c * d, d));
                if (distance < bestDistance)
                {
                    bestDistance = distance;
                    best = c;
                }
            }

            changed |= assignments[i] != best;
            assignments[i] = best;
            inertia += bestDistance;
        }

        return changed;
    }

    private static int FarthestPoint(ReadOnlySpan<float> points, int n, int d, ReadOnlySpan<float> centres, ReadOnlySpan<int> assignments)
    {
        var far = 0;
        var farDistance = -1f;
        for (var i = 0; i < n; i++)
        {
            var distance = Prototype.SquaredDistance(points.Slice(i * d, d), centres.Slice(assignments[i] * d, d));
            if (distance > farDistance)
            {
                farDistance = distance;
                far = i;
            }
        }

        return far;
    }
}

/// <summary>
/// Mean silhouette coefficient (Rousseeuw 1987): for point i, a = mean distance to its own cluster, b = smallest mean
/// distance to another cluster, s = (b − a)/max(a, b), s = 0 for a point alone in its cluster (scikit-learn's
/// convention). In [−1, 1]; higher means tighter, better separated clusters.
/// <example>Points 0, 1 (cluster 0) and 10, 11 (cluster 1) on a line: point 0 has a = 1, b = 10.5, s = 9.5/10.5; point 1 has
/// a = 1, b = 9.5, s = 8.5/9.5; by symmetry the mean is (9.5/10.5 + 8.5/9.5)/2 ≈ 0.8997.</example>
/// </summary>
public static class Silhouette
{
    /// <summary>Pairwise Euclidean distances (n × n) of n points of dimension d, computed once and shared by all k.</summary>
    public static float[] PairwiseDistances(ReadOnlySpan<float> points, int n, int d)
    {
        if (points.Length != n * d)
        {
            throw new ArgumentException($"{n} points of dimension {d} need {n * d} values; got {points.Length}.", nameof(points));
        }

        var distances = new float[n * n];
        for (var i = 0; i < n; i++)
        {
            for (var j = i + 1; j < n; j++)
            {
                var distance = TensorPrimitives.Distance(points.Slice(i * d, d), points.Slice(j * d, d));
                distances[i * n + j] = distance;
                distances[j * n + i] = distance;
            }
        }

        return distances;
    }

    /// <summary>Mean silhouette of an assignment into k clusters, from the pairwise distances.</summary>
    public static double Score(ReadOnlySpan<float> distances, int n, ReadOnlySpan<int> assignments, int k)
    {
        if (distances.Length != n * n || assignments.Length != n)
        {
            throw new ArgumentException($"Silhouette of {n} points needs {n * n} distances and {n} assignments.");
        }

        if (k < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(k), "The silhouette needs at least two clusters.");
        }

        var sizes = new int[k];
        foreach (var a in assignments)
        {
            sizes[a]++;
        }

        var sums = new double[k];
        double total = 0;
        for (var i = 0; i < n; i++)
        {
            var own = assignments[i];
            if (sizes[own] <= 1)
            {
                continue; // s = 0
            }

            Array.Clear(sums);
            var row = distances.Slice(i * n, n);
            for (var j = 0; j < n; j++)
            {
                sums[assignments[j]] += row[j];
            }

            var a = sums[own] / (sizes[own] - 1);
            var b = double.PositiveInfinity;
            for (var c = 0; c < k; c++)
            {
                if (c != own && sizes[c] > 0)
                {
                    b = Math.Min(b, sums[c] / sizes[c]);
                }
            }

            var denominator = Math.Max(a, b);
            if (double.IsFinite(b) && denominator > 0)
            {
                total += (b - a) / denominator;
            }
        }

        return total / n;
    }
}
