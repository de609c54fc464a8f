namespace FedEdge.Data;

/// <summary>
/// Transforms that simulate concept drift on a device's data (FedDAA's benchmark, arXiv 2506.21054):
/// virtual drift rotates the images (P(x) changes), real drift remaps the labels (P(y|x) changes).
/// </summary>
public static class DataTransforms
{
    /// <summary>
    /// Rotates every image by <paramref name="degrees"/> (counter-clockwise) about its centre with bilinear
    /// interpolation; pixels that come from outside the image are 0. Samples must have shape [C, H, W] or [H, W].
    /// The result has float storage.
    /// </summary>
    public static Dataset Rotate(Dataset data, double degrees)
    {
        ArgumentNullException.ThrowIfNull(data);
        int[] shape = data.SampleShape;
        if (shape.Length is not (2 or 3))
        {
            throw new ArgumentException($"Rotation needs image samples of shape [C, H, W] or [H, W], not [{string.Join(", ", shape)}].");
        }
        int h = shape[^2], w = shape[^1], channels = shape.Length == 3 ? shape[0] : 1;
        double theta = degrees * Math.PI / 180, cos = Math.Cos(theta), sin = Math.Sin(theta);
        double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;

        // Source coordinates and weights depend only on the output pixel: compute them once for all images.
        var taps = new (int Offset, float Weight)[h * w * 4];
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                // Inverse mapping: output (x, y) samples the source at the point rotated back by −θ
                // (image y axis points down, so a counter-clockwise turn on screen uses −θ in these coordinates).
                double dx = x - cx, dy = y - cy;
                double sx = cos * dx - sin * dy + cx;
                double sy = sin * dx + cos * dy + cy;
                int x0 = (int)Math.Floor(sx), y0 = (int)Math.Floor(sy);
                double fx = sx - x0, fy = sy - y0;
                int t = (y * w + x) * 4;
                taps[t] = Tap(x0, y0, (1 - fx) * (1 - fy));
                taps[t + 1] = Tap(x0 + 1, y0, fx * (1 - fy));
                taps[t + 2] = Tap(x0, y0 + 1, (1 - fx) * fy);
                taps[t + 3] = Tap(x0 + 1, y0 + 1, fx * fy);
            }
        }

        int size = data.SampleSize, plane = h * w;
        var output = new float[(long)data.Count * size];
        Parallel.For(0, data.Count, () => new float[size], (i, _, sample) =>
        {
            data.CopyFeatures(i, 1, sample);
            var target = output.AsSpan(i * size, size);
            for (int c = 0; c < channels; c++)
            {
                var source = sample.AsSpan(c * plane, plane);
                var destination = target.Slice(c * plane, plane);
                for (int p = 0; p < plane; p++)
                {
                    float v = 0;
                    for (int k = 0; k < 4; k++)
                    {
                        var (offset, weight) = taps[p * 4 + k];
                        if (offset >= 0)
                        {
                            v += weight * source[offset];
                        }
                    }
                    destination[p] = v;
                }
            }
            return sample;
        }, _ => { });
        return data.WithFloatFeatures(output);

        (int, float) Tap(int x, int y, double weight) =>
            x >= 0 && x < w && y >= 0 && y < h ? (y * w + x, (float)weight) : (-1, 0f);
    }

    /// <summary>Maps every label y to <paramref name="map"/>[y] (map.Length = number of classes).</summary>
    public static Dataset RemapLabels(Dataset data, ReadOnlySpan<long> map)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (map.Length < data.ClassCount)
        {
            throw new ArgumentException($"Label map has {map.Length} entries; the data set has {data.ClassCount} classes.", nameof(map));
        }
        var labels = new long[data.Count];
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = map[(int)data.Labels[i]];
        }
        return data.WithLabels(labels, data.ClassCount);
    }

    /// <summary>Label map y → (y + shift) mod C (FedDAA's real drift uses shifts 1 and 2).</summary>
    public static long[] ShiftMap(int classCount, int shift)
    {
        var map = new long[classCount];
        for (int y = 0; y < classCount; y++)
        {
            map[y] = (((y + shift) % classCount) + classCount) % classCount;
        }
        return map;
    }

    /// <summary>Label map y → C − 1 − y (FedDAA's reversed labels; also the label-flip attack y → 9 − y for C = 10).</summary>
    public static long[] ReverseMap(int classCount)
    {
        var map = new long[classCount];
        for (int y = 0; y < classCount; y++)
        {
            map[y] = classCount - 1 - y;
        }
        return map;
    }
}
