using System.Globalization;

namespace FedEdge.Data;

/// <summary>
/// Splits a data set's samples among simulated devices, following the definitions of NIID-Bench
/// (Li, Diao, Chen and He, "Federated Learning on Non-IID Data Silos: An Experimental Study", ICDE 2022,
/// and its <c>partition_data</c> code). Every partitioner is deterministic for a given seed and returns,
/// per device, the indices of its samples; devices' index sets are disjoint.
/// </summary>
public static class Partition
{
    /// <summary>NIID-Bench's minimum samples per device under Dirichlet skew (its <c>min_require_size</c>).</summary>
    public const int DirichletMinSize = 10;

    /// <summary>Draws of the Dirichlet proportions before giving up (NIID-Bench retries without bound).</summary>
    public const int DirichletMaxAttempts = 1000;

    /// <summary>
    /// Homogeneous split: a random permutation of all samples cut into <paramref name="devices"/> nearly equal
    /// consecutive parts (NIID-Bench "homo": <c>np.array_split(np.random.permutation(N), n)</c>).
    /// </summary>
    public static int[][] Iid(ReadOnlySpan<long> labels, int devices, int seed)
    {
        CheckDevices(devices, labels.Length);
        var rng = new Random(seed);
        var permutation = Enumerable.Range(0, labels.Length).ToArray();
        rng.Shuffle(permutation);
        return ArraySplit(permutation, devices);
    }

    /// <summary>
    /// Label-distribution skew (NIID-Bench "noniid-labeldir", "p_k ~ Dir(β)"): for each class k, its samples are
    /// shuffled and divided among devices in proportions p ~ Dir(α·1ₙ), with devices that already hold N/n or
    /// more samples getting proportion 0 (renormalised). The whole draw repeats until every device holds at least
    /// <see cref="DirichletMinSize"/> samples (NIID-Bench's <c>min_require_size</c> rule; lowered to
    /// ⌊N/n⌋ when the data set is too small for 10 per device). Each device's indices are finally shuffled.
    /// </summary>
    /// <remarks>
    /// Worked example: 10 devices, α = 0.5 on Fashion-MNIST gives devices dominated by 2–4 classes; α = 100 is close
    /// to IID. Smaller α, stronger skew.
    /// </remarks>
    /// <exception cref="InvalidOperationException">No draw satisfied the minimum size within <see cref="DirichletMaxAttempts"/>.</exception>
    public static int[][] Dirichlet(ReadOnlySpan<long> labels, int devices, double alpha, int seed)
    {
        CheckDevices(devices, labels.Length);
        if (!(alpha > 0) || double.IsInfinity(alpha))
        {
            throw new ArgumentOutOfRangeException(nameof(alpha), $"Dirichlet concentration must be positive and finite, not {alpha}.");
        }
        int n = labels.Length;
        int minSize = Math.Min(DirichletMinSize, n / devices);
        var byClass = IndicesByClass(labels);
        var rng = new Random(seed);
        var batches = new List<int>[devices];
        var proportions = new double[devices];
        for (int attempt = 0; attempt < DirichletMaxAttempts; attempt++)
        {
            for (int j = 0; j < devices; j++)
            {
                batches[j] = [];
            }
            foreach (var classIndices in byClass)
            {
                int[] idx = (int[])classIndices.Clone();
                rng.Shuffle(idx);
                SampleDirichlet(rng, alpha, proportions);
                double sum = 0;
                for (int j = 0; j < devices; j++)
                {
                    // Devices that already hold their share of the data take no more (NIID-Bench's balancing term).
                    if (batches[j].Count >= (double)n / devices)
                    {
                        proportions[j] = 0;
                    }
                    sum += proportions[j];
                }
                // np.split at floor(cumsum(p)·|idx_k|)[:-1].
                int previous = 0;
                double cumulative = 0;
                for (int j = 0; j < devices; j++)
                {
                    int cut;
                    if (j == devices - 1)
                    {
                        cut = idx.Length;
                    }
                    else
                    {
                        cumulative += sum > 0 ? proportions[j] / sum : 0;
                        cut = Math.Clamp((int)(cumulative * idx.Length), previous, idx.Length);
                    }
                    batches[j].AddRange(idx.AsSpan(previous, cut - previous));
                    previous = cut;
                }
            }
            if (batches.Min(b => b.Count) >= minSize)
            {
                return batches.Select(b =>
                {
                    var indices = b.ToArray();
                    rng.Shuffle(indices);
                    return indices;
                }).ToArray();
            }
        }
        throw new InvalidOperationException(
            $"Dirichlet({alpha}) partition of {n} samples among {devices} devices left some device with fewer than {minSize} samples " +
            $"in {DirichletMaxAttempts} draws; use fewer devices or a larger alpha.");
    }

    /// <summary>
    /// Quantity-based label imbalance (NIID-Bench "#C=k", <c>noniid-#label{k}</c>): device i gets label i mod K and
    /// k − 1 further distinct labels drawn at random; each label's samples are shuffled and split evenly among the
    /// devices that hold it. Every device therefore holds exactly k distinct labels. A label no device drew is
    /// left out (possible only with fewer devices than classes), as in NIID-Bench.
    /// </summary>
    public static int[][] Shards(ReadOnlySpan<long> labels, int devices, int labelsPerDevice, int seed)
    {
        CheckDevices(devices, labels.Length);
        var byClass = IndicesByClass(labels);
        int classes = byClass.Length;
        if (labelsPerDevice < 1 || labelsPerDevice > classes)
        {
            throw new ArgumentOutOfRangeException(nameof(labelsPerDevice),
                $"Labels per device must be in 1..{classes} (the number of classes), not {labelsPerDevice}.");
        }
        var rng = new Random(seed);
        var contains = new List<int>[devices];
        var holders = new int[classes];
        for (int i = 0; i < devices; i++)
        {
            contains[i] = [i % classes];
            while (contains[i].Count < labelsPerDevice)
            {
                int label = rng.Next(classes);
                if (!contains[i].Contains(label))
                {
                    contains[i].Add(label);
                }
            }
            foreach (int label in contains[i])
            {
                holders[label]++;
            }
        }
        var result = new List<int>[devices];
        for (int j = 0; j < devices; j++)
        {
            result[j] = [];
        }
        for (int label = 0; label < classes; label++)
        {
            if (holders[label] == 0)
            {
                continue;
            }
            int[] idx = (int[])byClass[label].Clone();
            rng.Shuffle(idx);
            if (idx.Length < holders[label])
            {
                throw new InvalidOperationException(
                    $"Label {label} has {idx.Length} samples but {holders[label]} devices hold it; use fewer devices or more labels per device.");
            }
            var splits = ArraySplit(idx, holders[label]);
            int next = 0;
            for (int j = 0; j < devices; j++)
            {
                if (contains[j].Contains(label))
                {
                    result[j].AddRange(splits[next++]);
                }
            }
        }
        return result.Select(r => r.ToArray()).ToArray();
    }

    /// <summary>
    /// Partitions by a spec: <c>iid</c>, <c>dirichlet:α</c> (e.g. <c>dirichlet:0.5</c>) or <c>shards:k</c>
    /// (e.g. <c>shards:2</c>, NIID-Bench's #C=2).
    /// </summary>
    public static int[][] Apply(string spec, ReadOnlySpan<long> labels, int devices, int seed) =>
        PartitionSpec.Parse(spec).Apply(labels, devices, seed);

    /// <summary>Samples per class for each device ([device][class]), for reports and tests.</summary>
    public static int[][] ClassHistogram(int[][] partition, ReadOnlySpan<long> labels, int classCount)
    {
        var histogram = new int[partition.Length][];
        for (int j = 0; j < partition.Length; j++)
        {
            histogram[j] = new int[classCount];
            foreach (int i in partition[j])
            {
                histogram[j][labels[i]]++;
            }
        }
        return histogram;
    }

    /// <summary>np.array_split: the first (N mod n) parts get one extra element.</summary>
    private static int[][] ArraySplit(int[] items, int parts)
    {
        var result = new int[parts][];
        int baseSize = items.Length / parts, extra = items.Length % parts, start = 0;
        for (int j = 0; j < parts; j++)
        {
            int size = baseSize + (j < extra ? 1 : 0);
            result[j] = items.AsSpan(start, size).ToArray();
            start += size;
        }
        return result;
    }

    private static int[][] IndicesByClass(ReadOnlySpan<long> labels)
    {
        long max = -1;
        foreach (long y in labels)
        {
            if (y < 0)
            {
                throw new ArgumentException($"Labels must be non-negative; found {y}.", nameof(labels));
            }
            max = Math.Max(max, y);
        }
        var lists = new List<int>[max + 1];
        for (int k = 0; k < lists.Length; k++)
        {
            lists[k] = [];
        }
        for (int i = 0; i < labels.Length; i++)
        {
            lists[labels[i]].Add(i);
        }
        return lists.Select(l => l.ToArray()).ToArray();
    }

    /// <summary>Dirichlet(α·1) sample: independent Gamma(α, 1) draws, normalised.</summary>
    private static void SampleDirichlet(Random rng, double alpha, Span<double> result)
    {
        double sum = 0;
        for (int j = 0; j < result.Length; j++)
        {
            result[j] = SampleGamma(rng, alpha);
            sum += result[j];
        }
        if (sum <= 0)
        {
            // All draws underflowed (tiny α): the mass goes to one random device, the α → 0 limit.
            result.Clear();
            result[rng.Next(result.Length)] = 1;
            return;
        }
        for (int j = 0; j < result.Length; j++)
        {
            result[j] /= sum;
        }
    }

    /// <summary>
    /// Gamma(shape, 1) by Marsaglia and Tsang ("A simple method for generating gamma variables", ACM TOMS 2000);
    /// for shape &lt; 1, Gamma(shape + 1)·U^(1/shape).
    /// </summary>
    private static double SampleGamma(Random rng, double shape)
    {
        if (shape < 1)
        {
            double u = rng.NextDouble();
            return SampleGamma(rng, shape + 1) * Math.Pow(u, 1.0 / shape);
        }
        double d = shape - 1.0 / 3.0, c = 1.0 / Math.Sqrt(9 * d);
        while (true)
        {
            double x, v;
            do
            {
                x = SampleNormal(rng);
                v = 1 + c * x;
            }
            while (v <= 0);
            v = v * v * v;
            double u = rng.NextDouble();
            if (u < 1 - 0.0331 * x * x * x * x || Math.Log(u) < 0.5 * x * x + d * (1 - v + Math.Log(v)))
            {
                return d * v;
            }
        }
    }

    private static double SampleNormal(Random rng)
    {
        // Box–Muller; 1 − U avoids log(0).
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    private static void CheckDevices(int devices, int samples)
    {
        if (devices < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(devices), $"Number of devices must be positive, not {devices}.");
        }
        if (devices > samples)
        {
            throw new ArgumentOutOfRangeException(nameof(devices), $"Cannot split {samples} samples among {devices} devices.");
        }
    }

    internal static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>Kinds of partition.</summary>
public enum PartitionKind
{
    Iid,
    Dirichlet,
    Shards,
}

/// <summary>A parsed partition spec: <c>iid</c>, <c>dirichlet:α</c> or <c>shards:k</c>.</summary>
public sealed record PartitionSpec(PartitionKind Kind, double Alpha = 0, int LabelsPerDevice = 0)
{
    /// <summary>Parses <c>iid</c> | <c>dirichlet:0.5</c> | <c>shards:2</c> (case-insensitive).</summary>
    /// <exception cref="FormatException">The spec is not one of these forms; the message lists them.</exception>
    public static PartitionSpec Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string s = spec.Trim();
        int colon = s.IndexOf(':');
        string kind = (colon < 0 ? s : s[..colon]).ToLowerInvariant();
        string? argument = colon < 0 ? null : s[(colon + 1)..].Trim();
        switch (kind)
        {
            case "iid" when argument is null:
                return new PartitionSpec(PartitionKind.Iid);
            case "dirichlet" when argument is not null
                && double.TryParse(argument, NumberStyles.Float, CultureInfo.InvariantCulture, out double alpha)
                && alpha > 0 && double.IsFinite(alpha):
                return new PartitionSpec(PartitionKind.Dirichlet, Alpha: alpha);
            case "shards" when argument is not null
                && int.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out int k) && k >= 1:
                return new PartitionSpec(PartitionKind.Shards, LabelsPerDevice: k);
            default:
                throw new FormatException(
                    $"Bad partition '{spec}': expected 'iid', 'dirichlet:ALPHA' with ALPHA > 0 (e.g. dirichlet:0.5) " +
                    "or 'shards:K' with K ≥ 1 labels per device (e.g. shards:2).");
        }
    }

    /// <summary>Splits samples with these labels among <paramref name="devices"/>.</summary>
    public int[][] Apply(ReadOnlySpan<long> labels, int devices, int seed) => Kind switch
    {
        PartitionKind.Iid => Partition.Iid(labels, devices, seed),
        PartitionKind.Dirichlet => Partition.Dirichlet(labels, devices, Alpha, seed),
        _ => Partition.Shards(labels, devices, LabelsPerDevice, seed),
    };

    /// <summary>The spec in its parseable form.</summary>
    public override string ToString() => Kind switch
    {
        PartitionKind.Iid => "iid",
        PartitionKind.Dirichlet => "dirichlet:" + Partition.Format(Alpha),
        _ => "shards:" + LabelsPerDevice.ToString(CultureInfo.InvariantCulture),
    };
}
