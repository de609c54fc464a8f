namespace FedEdge.Drift;

/// <summary>Per-sample cluster weights of one device, its updated cluster prior π and its cluster × label weight histogram.</summary>
/// <param name="Weights">n × C, row-major; each row sums to 1.</param>
/// <param name="Prior">π_c = mean_i w_ic (length C).</param>
/// <param name="LabelHistogram">C × R: Σ_i w_ic·1[y_i = r], what the device reports so that the server can form P_c(y).</param>
public sealed record SoftAssignment(int SampleCount, int ClusterCount, float[] Weights, float[] Prior, float[] LabelHistogram)
{
    public ReadOnlySpan<float> WeightsOf(int sample) => Weights.AsSpan(sample * ClusterCount, ClusterCount);

    /// <summary>Σ_i w_ic: the effective sample count of cluster c on this device (its aggregation weight).</summary>
    public float Mass(int cluster)
    {
        var sum = 0f;
        for (var i = 0; i < SampleCount; i++)
        {
            sum += Weights[i * ClusterCount + cluster];
        }

        return sum;
    }
}

/// <summary>
/// FedRC's soft assignment of a device's samples to cluster models (Guo et al., "FedRC: Tackling Diverse
/// Distribution Shifts Challenge in Federated Learning by Robust Clustering", ICML 2024), in the form used by FedDAA's
/// code (arXiv 2506.21054): w_ic = softmax_c(log π_c − ℓ_c(x_i, y_i) − log P_c(y_i)), with ℓ_c the loss of cluster
/// model c and P_c(y) the label distribution of cluster c broadcast by the server; then π_c = mean_i w_ic.
/// Dividing by P_c(y_i) makes the weight follow p(x|y) rather than p(y|x)·p(y), so a cluster is chosen for the
/// concept, not for being trained on a similar label mix (robust to label drift).
/// <example>One sample, two clusters, π = (½, ½), P_c(y) equal, losses (0, ln 3): w = softmax(0, −ln 3) = (¾, ¼).</example>
/// </summary>
public static class SoftClusterAssignment
{
    /// <param name="losses">n × C per-sample losses ℓ_c(x_i, y_i), row-major.</param>
    /// <param name="labels">n labels in [0, R).</param>
    /// <param name="prior">π (C), positive; the device's current cluster prior.</param>
    /// <param name="labelDistributions">C × R: P_c(y); zeros are floored at <paramref name="floor"/>.</param>
    public static SoftAssignment Assign(ReadOnlySpan<float> losses, ReadOnlySpan<long> labels, ReadOnlySpan<float> prior, ReadOnlySpan<float> labelDistributions, int labelCount, float floor = 1e-4f)
    {
        var n = labels.Length;
        var c = prior.Length;
        if (c == 0 || losses.Length != n * c)
        {
            throw new ArgumentException($"{n} samples × {c} clusters need {n * c} losses; got {losses.Length}.", nameof(losses));
        }

        if (labelDistributions.Length != c * labelCount)
        {
            throw new ArgumentException($"{c} clusters × {labelCount} labels need {c * labelCount} label probabilities; got {labelDistributions.Length}.", nameof(labelDistributions));
        }

        var logPrior = new float[c];
        for (var j = 0; j < c; j++)
        {
            logPrior[j] = MathF.Log(MathF.Max(prior[j], floor));
        }

        var weights = new float[n * c];
        var newPrior = new float[c];
        var histogram = new float[c * labelCount];
        for (var i = 0; i < n; i++)
        {
            var y = labels[i];
            if ((ulong)y >= (ulong)labelCount)
            {
                throw new ArgumentException($"Label {y} of sample {i} is outside [0, {labelCount}).", nameof(labels));
            }

            var row = weights.AsSpan(i * c, c);
            var max = float.NegativeInfinity;
            for (var j = 0; j < c; j++)
            {
                var loss = losses[i * c + j];
                var score = logPrior[j] - (float.IsFinite(loss) ? loss : 1e4f) - MathF.Log(MathF.Max(labelDistributions[j * labelCount + (int)y], floor));
                row[j] = score;
                max = MathF.Max(max, score);
            }

            var sum = 0f;
            for (var j = 0; j < c; j++)
            {
                row[j] = MathF.Exp(row[j] - max);
                sum += row[j];
            }

            for (var j = 0; j < c; j++)
            {
                row[j] /= sum;
                newPrior[j] += row[j];
                histogram[j * labelCount + (int)y] += row[j];
            }
        }

        if (n > 0)
        {
            for (var j = 0; j < c; j++)
            {
                newPrior[j] /= n;
            }
        }

        return new SoftAssignment(n, c, weights, newPrior, histogram);
    }

    /// <summary>
    /// Server side: P_c(y) from the devices' summed cluster × label weight histograms (C × R), with add-α smoothing
    /// so that a label no device has shown a cluster yet keeps a small probability.
    /// </summary>
    public static float[] LabelDistributions(ReadOnlySpan<float> summedHistograms, int clusterCount, int labelCount, float smoothing = 1f)
    {
        if (summedHistograms.Length != clusterCount * labelCount)
        {
            throw new ArgumentException($"{clusterCount} × {labelCount} histogram values expected; got {summedHistograms.Length}.", nameof(summedHistograms));
        }

        var result = new float[clusterCount * labelCount];
        for (var j = 0; j < clusterCount; j++)
        {
            var total = 0f;
            for (var r = 0; r < labelCount; r++)
            {
                total += summedHistograms[j * labelCount + r] + smoothing;
            }

            for (var r = 0; r < labelCount; r++)
            {
                result[j * labelCount + r] = (summedHistograms[j * labelCount + r] + smoothing) / total;
            }
        }

        return result;
    }

    /// <summary>
    /// Draws one cluster per sample from its weights (w_i·). Training cluster model c on the samples that drew c gives
    /// the gradient Σ_i w_ic ∇ℓ_c(x_i) in expectation, for one pass over the data in total instead of one per cluster,
    /// and without per-sample loss weights in the training graph.
    /// </summary>
    public static int[] SampleClusters(SoftAssignment assignment, Random random)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        ArgumentNullException.ThrowIfNull(random);
        var result = new int[assignment.SampleCount];
        for (var i = 0; i < result.Length; i++)
        {
            var u = (float)random.NextDouble();
            var row = assignment.WeightsOf(i);
            var pick = row.Length - 1;
            for (var j = 0; j < row.Length; j++)
            {
                u -= row[j];
                if (u <= 0)
                {
                    pick = j;
                    break;
                }
            }

            result[i] = pick;
        }

        return result;
    }
}

/// <summary>
/// Matches the clusters of a new k-means fit to existing cluster models, so that a model keeps serving the concept it
/// learned when k changes or devices move between clusters. Each new cluster j takes the existing model with the lowest
/// mean loss on the data of j's devices, greedily by margin; two clusters may share a parent (the new cluster model is
/// then a copy that diverges as its devices train it).
/// </summary>
public static class ClusterModelMatcher
{
    /// <param name="deviceClusters">New cluster of each device (n).</param>
    /// <param name="deviceModelLoss">n × M: mean loss of existing model m on device i's current data.</param>
    /// <returns>For each of the k new clusters, the index of the existing model it starts from.</returns>
    public static int[] Match(ReadOnlySpan<int> deviceClusters, ReadOnlySpan<float> deviceModelLoss, int k, int models)
    {
        var n = deviceClusters.Length;
        if (models <= 0 || deviceModelLoss.Length != n * models)
        {
            throw new ArgumentException($"{n} devices × {models} models need {n * models} losses; got {deviceModelLoss.Length}.", nameof(deviceModelLoss));
        }

        var sum = new double[k * models];
        var count = new int[k];
        for (var i = 0; i < n; i++)
        {
            var j = deviceClusters[i];
            if ((uint)j >= (uint)k)
            {
                throw new ArgumentException($"Device {i} is in cluster {j}, outside [0, {k}).", nameof(deviceClusters));
            }

            count[j]++;
            for (var m = 0; m < models; m++)
            {
                sum[j * models + m] += deviceModelLoss[i * models + m];
            }
        }

        var parent = new int[k];
        var used = new bool[models];
        var done = new bool[k];

        // Greedy: repeatedly fix the (cluster, unused model) pair with the lowest mean loss; once every model is used,
        // remaining clusters take their best model regardless.
        for (var step = 0; step < k; step++)
        {
            var bestJ = -1;
            var bestM = -1;
            var best = double.PositiveInfinity;
            var allUsed = used.All(u => u);
            for (var j = 0; j < k; j++)
            {
                if (done[j])
                {
                    continue;
                }

                for (var m = 0; m < models; m++)
                {
                    if (used[m] && !allUsed)
                    {
                        continue;
                    }

                    var mean = count[j] == 0 ? double.MaxValue / 2 : sum[j * models + m] / count[j];
                    if (mean < best || bestJ < 0)
                    {
                        best = mean;
                        bestJ = j;
                        bestM = m;
                    }
                }
            }

            parent[bestJ] = bestM;
            done[bestJ] = true;
            used[bestM] = true;
        }

        return parent;
    }
}
