using System.Numerics.Tensors;

namespace FedEdge.Data;

/// <summary>How a data set keeps its features in memory.</summary>
public enum FeatureStorage
{
    /// <summary>One float per feature (4 bytes): zero-copy <see cref="Dataset.FeaturesOf"/>.</summary>
    Float32,

    /// <summary>
    /// One byte per feature, value = byte / <see cref="Dataset.ByteDivisor"/> (for 8-bit images such as
    /// Fashion-MNIST: a quarter of the memory; 60,000 images take 47 MB instead of 188 MB). Batches are
    /// converted to float by <see cref="Dataset.CopyBatch(ReadOnlySpan{int}, Span{float}, Span{long})"/>.
    /// </summary>
    Byte,
}

/// <summary>
/// A labelled data set held in memory: features flattened row-major per sample (sample i occupies
/// [i·SampleSize, (i+1)·SampleSize)), and per sample either a class label (int64) or, for regression
/// data, a float target vector.
/// </summary>
/// <remarks>
/// Batches for training are gathered into caller-owned buffers with <see cref="CopyBatch(ReadOnlySpan{int}, Span{float}, Span{long})"/>
/// (shuffled indices) or <see cref="CopyRange(int, int, Span{float}, Span{long})"/> (consecutive samples), neither of which
/// allocates. Instances are immutable after construction and safe to share between threads.
/// </remarks>
public sealed class Dataset
{
    private readonly float[]? _features;
    private readonly byte[]? _bytes;
    private readonly int[] _sampleShape;
    private readonly int[] _targetShape;

    /// <summary>A classification data set with float features.</summary>
    /// <param name="features">Count × SampleSize floats, row-major per sample. Not copied.</param>
    /// <param name="labels">One class index per sample, in [0, classCount). Not copied.</param>
    /// <param name="sampleShape">Shape of one sample, e.g. [1, 28, 28].</param>
    /// <param name="classCount">Number of classes; 0 to use max(label) + 1.</param>
    public Dataset(float[] features, long[] labels, ReadOnlySpan<int> sampleShape, int classCount = 0)
        : this(features, null, 0f, labels, null, sampleShape, default, classCount)
    {
    }

    /// <summary>A classification data set with 8-bit features, value = byte / <paramref name="byteDivisor"/>
    /// (division rather than multiplication by the reciprocal, so values match numpy/PyTorch's pixel / 255 exactly).</summary>
    public Dataset(byte[] features, float byteDivisor, long[] labels, ReadOnlySpan<int> sampleShape, int classCount = 0)
        : this(null, features, byteDivisor, labels, null, sampleShape, default, classCount)
    {
    }

    /// <summary>A regression data set: float features and a float target vector per sample (for MSE).</summary>
    public Dataset(float[] features, ReadOnlySpan<int> sampleShape, float[] targets, ReadOnlySpan<int> targetShape)
        : this(features, null, 0f, [], targets, sampleShape, targetShape, 0)
    {
    }

    private Dataset(float[]? features, byte[]? bytes, float byteDivisor, long[] labels, float[]? targets,
        ReadOnlySpan<int> sampleShape, ReadOnlySpan<int> targetShape, int classCount)
    {
        if (sampleShape.IsEmpty)
        {
            throw new ArgumentException("Sample shape must have at least one dimension.", nameof(sampleShape));
        }
        _sampleShape = sampleShape.ToArray();
        SampleSize = ShapeSize(_sampleShape, nameof(sampleShape));
        _features = features;
        _bytes = bytes;
        ByteDivisor = bytes is null ? 1f : byteDivisor;
        if (!(ByteDivisor > 0f) || !float.IsFinite(ByteDivisor))
        {
            throw new ArgumentOutOfRangeException(nameof(byteDivisor), $"Byte divisor must be positive and finite, not {byteDivisor}.");
        }
        long featureCount = features?.LongLength ?? bytes!.LongLength;
        if (featureCount % SampleSize != 0)
        {
            throw new ArgumentException(
                $"Feature array length {featureCount} is not a multiple of the sample size {SampleSize} (shape [{string.Join(", ", _sampleShape)}]).");
        }
        Count = checked((int)(featureCount / SampleSize));

        Labels = labels;
        Targets = targets;
        _targetShape = targetShape.ToArray();
        if (targets is null)
        {
            if (labels.Length != Count)
            {
                throw new ArgumentException($"Data set has {Count} samples but {labels.Length} labels.", nameof(labels));
            }
            long max = -1;
            for (int i = 0; i < labels.Length; i++)
            {
                if (labels[i] < 0)
                {
                    throw new ArgumentException($"Label of sample {i} is negative ({labels[i]}).", nameof(labels));
                }
                max = Math.Max(max, labels[i]);
            }
            if (classCount == 0)
            {
                classCount = checked((int)(max + 1));
            }
            else if (max >= classCount)
            {
                throw new ArgumentException($"Label {max} is out of range for {classCount} classes.", nameof(labels));
            }
            ClassCount = classCount;
        }
        else
        {
            TargetSize = ShapeSize(_targetShape, nameof(targetShape));
            if (targets.LongLength != (long)Count * TargetSize)
            {
                throw new ArgumentException(
                    $"Data set has {Count} samples of target size {TargetSize} but {targets.Length} target values.", nameof(targets));
            }
        }
    }

    /// <summary>Number of samples.</summary>
    public int Count { get; }

    /// <summary>Shape of one sample, e.g. [1, 28, 28] (a copy).</summary>
    public int[] SampleShape => (int[])_sampleShape.Clone();

    /// <summary>Number of floats per sample (product of <see cref="SampleShape"/>).</summary>
    public int SampleSize { get; }

    /// <summary>Number of classes (0 for a regression data set).</summary>
    public int ClassCount { get; }

    /// <summary>Class label per sample; empty for a regression data set.</summary>
    public long[] Labels { get; }

    /// <summary>True when the samples carry class labels (false: float <see cref="Targets"/>).</summary>
    public bool HasLabels => Targets is null;

    /// <summary>Regression targets, Count × TargetSize, or null for a classification data set.</summary>
    public float[]? Targets { get; }

    /// <summary>Shape of one target vector (empty for a classification data set).</summary>
    public int[] TargetShape => (int[])_targetShape.Clone();

    /// <summary>Floats per target vector (0 for a classification data set).</summary>
    public int TargetSize { get; }

    /// <summary>How the features are stored.</summary>
    public FeatureStorage Storage => _features is null ? FeatureStorage.Byte : FeatureStorage.Float32;

    /// <summary>Divisor of byte-stored features, value = byte / ByteDivisor (1 for float storage).</summary>
    public float ByteDivisor { get; }

    /// <summary>
    /// The float features of all samples (Count × SampleSize). Throws for byte storage: use
    /// <see cref="CopyBatch(ReadOnlySpan{int}, Span{float}, Span{long})"/> or <see cref="WithStorage"/>.
    /// </summary>
    public float[] Features => _features ?? throw ByteStorageError();

    /// <summary>Zero-copy view of the features of samples [start, start + count) (float storage only).</summary>
    public ReadOnlySpan<float> FeaturesOf(int start, int count)
    {
        CheckRange(start, count);
        return Features.AsSpan(start * SampleSize, count * SampleSize);
    }

    /// <summary>Zero-copy view of the labels of samples [start, start + count).</summary>
    public ReadOnlySpan<long> LabelsOf(int start, int count)
    {
        CheckRange(start, count);
        RequireLabels();
        return Labels.AsSpan(start, count);
    }

    /// <summary>Zero-copy view of the regression targets of samples [start, start + count).</summary>
    public ReadOnlySpan<float> TargetsOf(int start, int count)
    {
        CheckRange(start, count);
        var targets = Targets ?? throw new InvalidOperationException("This data set has class labels, not float targets.");
        return targets.AsSpan(start * TargetSize, count * TargetSize);
    }

    /// <summary>
    /// Gathers the samples at <paramref name="indices"/> into <paramref name="x"/> (indices.Length × SampleSize floats)
    /// and their labels into <paramref name="y"/>. No allocation.
    /// </summary>
    public void CopyBatch(ReadOnlySpan<int> indices, Span<float> x, Span<long> y)
    {
        RequireLabels();
        CheckBatchBuffers(indices.Length, x.Length, y.Length, 1, "labels");
        for (int b = 0; b < indices.Length; b++)
        {
            int i = indices[b];
            CheckIndex(i);
            CopyFeatures(i, x.Slice(b * SampleSize, SampleSize));
            y[b] = Labels[i];
        }
    }

    /// <summary>As <see cref="CopyBatch(ReadOnlySpan{int}, Span{float}, Span{long})"/>, for regression targets.</summary>
    public void CopyBatch(ReadOnlySpan<int> indices, Span<float> x, Span<float> targets)
    {
        var source = Targets ?? throw new InvalidOperationException("This data set has class labels, not float targets.");
        CheckBatchBuffers(indices.Length, x.Length, targets.Length, TargetSize, "targets");
        for (int b = 0; b < indices.Length; b++)
        {
            int i = indices[b];
            CheckIndex(i);
            CopyFeatures(i, x.Slice(b * SampleSize, SampleSize));
            source.AsSpan(i * TargetSize, TargetSize).CopyTo(targets.Slice(b * TargetSize, TargetSize));
        }
    }

    /// <summary>Copies consecutive samples [start, start + count) and their labels. No allocation.</summary>
    public void CopyRange(int start, int count, Span<float> x, Span<long> y)
    {
        CheckRange(start, count);
        RequireLabels();
        CheckBatchBuffers(count, x.Length, y.Length, 1, "labels");
        CopyFeatures(start, count, x);
        Labels.AsSpan(start, count).CopyTo(y);
    }

    /// <summary>Copies the features of consecutive samples [start, start + count) as floats. No allocation.</summary>
    public void CopyFeatures(int start, int count, Span<float> x)
    {
        CheckRange(start, count);
        int n = count * SampleSize;
        if (x.Length < n)
        {
            throw new ArgumentException($"Feature buffer holds {x.Length} floats; {count} samples need {n}.", nameof(x));
        }
        if (_features is not null)
        {
            _features.AsSpan(start * SampleSize, n).CopyTo(x);
        }
        else
        {
            ConvertBytes(_bytes.AsSpan(start * SampleSize, n), x[..n]);
        }
    }

    /// <summary>A new data set holding copies of the samples at <paramref name="indices"/>, in that order.</summary>
    public Dataset Subset(ReadOnlySpan<int> indices)
    {
        int n = indices.Length;
        long[] labels = HasLabels ? new long[n] : [];
        float[]? targets = HasLabels ? null : new float[n * TargetSize];
        byte[]? bytes = _bytes is null ? null : new byte[n * SampleSize];
        float[]? features = _features is null ? null : new float[n * SampleSize];
        for (int b = 0; b < n; b++)
        {
            int i = indices[b];
            CheckIndex(i);
            if (features is not null)
            {
                _features.AsSpan(i * SampleSize, SampleSize).CopyTo(features.AsSpan(b * SampleSize));
            }
            else
            {
                _bytes.AsSpan(i * SampleSize, SampleSize).CopyTo(bytes.AsSpan(b * SampleSize));
            }
            if (targets is not null)
            {
                Targets.AsSpan(i * TargetSize, TargetSize).CopyTo(targets.AsSpan(b * TargetSize));
            }
            else
            {
                labels[b] = Labels[i];
            }
        }
        return new Dataset(features, bytes, ByteDivisor, labels, targets, _sampleShape, _targetShape, ClassCount);
    }

    /// <summary>The first <paramref name="count"/> samples (a copy), e.g. to cap test-set size.</summary>
    public Dataset Take(int count)
    {
        count = Math.Clamp(count, 0, Count);
        var indices = new int[count];
        for (int i = 0; i < count; i++)
        {
            indices[i] = i;
        }
        return Subset(indices);
    }

    /// <summary>This data set with its features in <paramref name="storage"/> (itself when already so).</summary>
    public Dataset WithStorage(FeatureStorage storage)
    {
        if (storage == Storage)
        {
            return this;
        }
        if (storage == FeatureStorage.Float32)
        {
            var features = new float[_bytes!.Length];
            ConvertBytes(_bytes, features);
            return new Dataset(features, null, 0f, Labels, Targets, _sampleShape, _targetShape, ClassCount);
        }
        throw new NotSupportedException("Float features cannot be stored as bytes without loss; load 8-bit data with FeatureStorage.Byte instead.");
    }

    /// <summary>Samples per class (length <see cref="ClassCount"/>).</summary>
    public int[] ClassCounts()
    {
        RequireLabels();
        var counts = new int[ClassCount];
        foreach (long label in Labels)
        {
            counts[label]++;
        }
        return counts;
    }

    /// <summary>A data set with the same features and labels mapped through <paramref name="map"/> (map[old] = new).</summary>
    /// <remarks>Label-map drift of FedDAA: y → C−1−y, (y+1) mod C, ... (see <see cref="DataTransforms"/>).</remarks>
    public Dataset WithLabels(long[] labels, int classCount = 0) =>
        new(_features, _bytes, ByteDivisor, labels, null, _sampleShape, default, classCount == 0 ? ClassCount : classCount);

    internal Dataset WithFloatFeatures(float[] features) =>
        new(features, null, 0f, Labels, Targets, _sampleShape, _targetShape, ClassCount);

    private void CopyFeatures(int sample, Span<float> destination)
    {
        if (_features is not null)
        {
            _features.AsSpan(sample * SampleSize, SampleSize).CopyTo(destination);
        }
        else
        {
            ConvertBytes(_bytes.AsSpan(sample * SampleSize, SampleSize), destination);
        }
    }

    private void ConvertBytes(ReadOnlySpan<byte> source, Span<float> destination)
    {
        TensorPrimitives.ConvertTruncating<byte, float>(source, destination);
        TensorPrimitives.Divide(destination[..source.Length], ByteDivisor, destination);
    }

    private void CheckBatchBuffers(int batch, int xLength, int yLength, int yPerSample, string what)
    {
        if (xLength < batch * SampleSize)
        {
            throw new ArgumentException($"Feature buffer holds {xLength} floats; a batch of {batch} needs {batch * SampleSize}.");
        }
        if (yLength < batch * yPerSample)
        {
            throw new ArgumentException($"The {what} buffer holds {yLength} values; a batch of {batch} needs {batch * yPerSample}.");
        }
    }

    private void CheckRange(int start, int count)
    {
        if (start < 0 || count < 0 || start > Count - count)
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"Samples [{start}, {start + count}) are outside the data set of {Count}.");
        }
    }

    private void CheckIndex(int i)
    {
        if ((uint)i >= (uint)Count)
        {
            throw new ArgumentOutOfRangeException(nameof(i), $"Sample index {i} is outside the data set of {Count}.");
        }
    }

    private void RequireLabels()
    {
        if (!HasLabels)
        {
            throw new InvalidOperationException("This data set has float regression targets, not class labels.");
        }
    }

    private static InvalidOperationException ByteStorageError() =>
        new("Features are stored as bytes; use CopyBatch/CopyRange/CopyFeatures or WithStorage(FeatureStorage.Float32).");

    private static int ShapeSize(int[] shape, string name)
    {
        long size = 1;
        foreach (int d in shape)
        {
            if (d <= 0)
            {
                throw new ArgumentException($"Shape [{string.Join(", ", shape)}] has a non-positive dimension.", name);
            }
            size *= d;
        }
        return checked((int)size);
    }
}
