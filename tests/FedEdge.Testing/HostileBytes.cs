namespace FedEdge.Testing;

/// <summary>
/// Deterministic byte mutations for the fuzz tests (seeded <see cref="Random"/>: a failing case is found again by its
/// seed and index): flip a bit, overwrite, truncate, insert, delete, set 0xFF, or write a large little-endian length.
/// </summary>
public static class HostileBytes
{
    public static byte[] Mutate(Random random, ReadOnlySpan<byte> original)
    {
        var bytes = new List<byte>(original.ToArray());
        for (int edits = random.Next(1, 5); edits > 0; edits--)
        {
            if (bytes.Count == 0)
            {
                bytes.Add((byte)random.Next(256));
                continue;
            }
            int p = random.Next(bytes.Count);
            switch (random.Next(7))
            {
                case 0: bytes[p] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[p] = (byte)random.Next(256); break;
                case 2: bytes.RemoveRange(p, bytes.Count - p); break;
                case 3: bytes.Insert(p, (byte)random.Next(256)); break;
                case 4: bytes.RemoveAt(p); break;
                case 5: bytes[p] = 0xFF; break;
                default:
                    // A length or count field set huge: what a reader must not allocate for.
                    for (int i = 0; i < 4 && p + i < bytes.Count; i++) bytes[p + i] = i == 3 ? (byte)random.Next(0x80) : (byte)0xFF;
                    break;
            }
        }
        return [.. bytes];
    }

    /// <summary>Random bytes of a random length up to <paramref name="maxLength"/>.</summary>
    public static byte[] Random(Random random, int maxLength)
    {
        var bytes = new byte[random.Next(maxLength + 1)];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>Runs <paramref name="check"/> on <paramref name="cases"/> inputs and checks that none allocates more than
    /// <paramref name="allowance"/>(input length) bytes on the calling thread; the case index is in the failure message.</summary>
    public static void Run(int cases, int seed, Func<Random, byte[]> input, Action<byte[]> check, Func<int, long> allowance)
    {
        var random = new Random(seed);
        for (int i = 0; i < cases; i++)
        {
            byte[] bytes = input(random);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                check(bytes);
            }
            catch (Exception e)
            {
                throw new InvalidOperationException($"case {i} of seed {seed} ({bytes.Length} bytes: {Convert.ToHexString(bytes.AsSpan(0, Math.Min(64, bytes.Length)))}…) failed", e);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (allocated > allowance(bytes.Length))
                throw new InvalidOperationException($"case {i} of seed {seed}: {allocated} bytes allocated for {bytes.Length} bytes of input");
        }
    }
}
