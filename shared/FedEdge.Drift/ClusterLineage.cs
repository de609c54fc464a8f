namespace FedEdge.Drift;

/// <summary>Result of <see cref="ClusterLineage.Match"/> for k new clusters.</summary>
/// <param name="Parents">For each new cluster, the index of the existing model it starts from (−1: none exists).</param>
/// <param name="Continues">For each new cluster, whether it <em>is</em> its parent model carried on (one per parent);
/// the others start as copies of their parent.</param>
public sealed record ClusterLineageResult(int[] Parents, bool[] Continues);

/// <summary>
/// Carries cluster models across a re-clustering (FedDAA, arXiv 2506.21054: clusters are created and retired as the
/// fleet drifts). Each new k-means cluster takes a parent among the existing cluster models with
/// <see cref="ClusterModelMatcher"/>, using 1 − affinity as the "loss" of a model on a device, where the affinity is the
/// device's FedRC prior (or weight mass) on that model — the server has no per-device losses, and the prior is the
/// device's own soft assignment, which follows those losses. Of the new clusters sharing a parent, the one with the
/// largest total affinity to it continues that model (keeps its identity, versions and rounds); the others start as
/// copies. Existing models that no new cluster continues have lost their devices and can be retired.
/// <para>
/// Worked example (the test <c>ClusterLineageTests.SplitKeepsTheLargerPartAndCopiesTheParentForTheOther</c>): two models,
/// devices 0–3 in model 0 (affinity 0.9), devices 4–5 in model 1; the new fit has three clusters {0,1}, {2,3}, {4,5}.
/// Parents = [0, 0, 1]: cluster {4,5} continues model 1, clusters {0,1} and {2,3} both descend from model 0 with equal
/// affinity 1.8, so the first continues it and the second is a new copy.
/// </para>
/// </summary>
public static class ClusterLineage
{
    /// <param name="groups">New cluster of each device (n), in [0, k).</param>
    /// <param name="affinity">n × M, row-major: device i's prior on existing model m, in [0, 1].</param>
    public static ClusterLineageResult Match(ReadOnlySpan<int> groups, ReadOnlySpan<float> affinity, int k, int models)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        ArgumentOutOfRangeException.ThrowIfNegative(models);
        var n = groups.Length;
        if (affinity.Length != n * models)
        {
            throw new ArgumentException($"{n} devices × {models} models need {n * models} affinities; got {affinity.Length}.", nameof(affinity));
        }

        var parents = new int[k];
        var continues = new bool[k];
        if (models == 0)
        {
            Array.Fill(parents, -1);
            return new ClusterLineageResult(parents, continues);
        }

        var loss = new float[n * models];
        for (var i = 0; i < loss.Length; i++)
        {
            var a = affinity[i];
            if (!float.IsFinite(a) || a < 0 || a > 1)
            {
                throw new ArgumentException($"Affinity {a} of device {i / models} to model {i % models} is not in [0, 1].", nameof(affinity));
            }

            loss[i] = 1 - a;
        }

        ClusterModelMatcher.Match(groups, loss, k, models).CopyTo(parents, 0);

        var total = new double[k];
        for (var i = 0; i < n; i++)
        {
            total[groups[i]] += affinity[i * models + parents[groups[i]]];
        }

        for (var m = 0; m < models; m++)
        {
            var best = -1;
            for (var j = 0; j < k; j++)
            {
                if (parents[j] == m && (best < 0 || total[j] > total[best] + 1e-9))
                {
                    best = j;
                }
            }

            if (best >= 0)
            {
                continues[best] = true;
            }
        }

        return new ClusterLineageResult(parents, continues);
    }
}
