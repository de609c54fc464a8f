namespace FedEdge.Data;

/// <summary>
/// Square patches cut from images, each centred on its own mean (the data of dictionary learning; Mairal, Bach, Ponce,
/// Sapiro, JMLR 2010, centre patches the same way). Patches whose centred norm is below a floor are skipped: on
/// Fashion-MNIST most of an image is flat background, and a zero patch carries nothing to learn.
/// <example>A 2 × 2 patch [1, 2, 3, 6] becomes [−2, −1, 0, 3].</example>
/// </summary>
public static class ImagePatches
{
    /// <summary>
    /// Up to <paramref name="count"/> patches of <paramref name="side"/> × <paramref name="side"/> from the images
    /// <paramref name="indices"/> of <paramref name="images"/> (samples [1, H, W] or [H, W]), at random positions drawn
    /// from <paramref name="seed"/>; returns count × side² values, row-major (fewer rows if too few patches qualify).
    /// </summary>
    public static float[] Extract(Dataset images, ReadOnlySpan<int> indices, int side, int count, int seed, double minNorm = 0.1)
    {
        ArgumentNullException.ThrowIfNull(images);
        var shape = images.SampleShape;
        int height = shape[^2], width = shape[^1];
        if (shape.Aggregate(1, (a, b) => a * b) != height * width)
        {
            throw new ArgumentException($"Patches need one-channel images; samples are [{string.Join(", ", shape)}].", nameof(images));
        }

        if (side < 1 || side > height || side > width)
        {
            throw new ArgumentOutOfRangeException(nameof(side), side, $"A patch side must lie in 1..{Math.Min(height, width)}.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (indices.IsEmpty || count == 0)
        {
            return [];
        }

        var random = new Random(seed);
        int size = side * side;
        var patches = new List<float>(count * size);
        var image = new float[height * width];
        var patch = new float[size];
        var labels = new long[1];
        int rows = 0;
        // Bounded attempts: an image set of background alone yields fewer patches, never an endless loop.
        for (int attempt = 0; attempt < 20 * count && rows < count; attempt++)
        {
            images.CopyBatch([indices[random.Next(indices.Length)]], image, labels);
            int top = random.Next(height - side + 1), left = random.Next(width - side + 1);
            double mean = 0;
            for (int r = 0; r < side; r++)
            {
                for (int c = 0; c < side; c++)
                {
                    patch[r * side + c] = image[(top + r) * width + left + c];
                    mean += patch[r * side + c];
                }
            }

            mean /= size;
            double norm = 0;
            for (int i = 0; i < size; i++)
            {
                patch[i] = (float)(patch[i] - mean);
                norm += patch[i] * patch[i];
            }

            if (Math.Sqrt(norm) >= minNorm)
            {
                patches.AddRange(patch);
                rows++;
            }
        }

        return patches.ToArray();
    }
}
