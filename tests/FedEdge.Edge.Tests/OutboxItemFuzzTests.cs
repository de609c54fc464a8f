using System.Security.Cryptography;
using FedEdge.Edge.Outbox;

namespace FedEdge.Edge.Tests;

/// <summary>
/// The outbox item reader on hostile files: mutated items, and mutated items whose SHA-256 was recomputed (so the
/// mutation gets past the checksum to the length fields). Each must decode or be refused with a reason, never throw, and
/// allocate no more than the file's size allows. Deterministic seed; 20,000 cases.
/// </summary>
public sealed class OutboxItemFuzzTests
{
    [Fact]
    public void Mutated_and_resealed_outbox_items_decode_or_are_refused_with_a_reason()
    {
        byte[][] seeds = [.. new[] { 0, 1, 300, 5000 }.Select(n =>
            OutboxItemFormat.Encode(7, Convert.ToHexString(RandomNumberGenerator.GetBytes(16)), DateTimeOffset.FromUnixTimeMilliseconds(1_760_000_000_000), new byte[n]))];
        var decoded = 0;
        HostileBytes.Run(20_000, seed: 1503,
            input: random =>
            {
                var bytes = HostileBytes.Mutate(random, seeds[random.Next(seeds.Length)]);
                if (random.Next(2) == 0 && bytes.Length >= 32) SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32), bytes.AsSpan(bytes.Length - 32)); // resealed
                return bytes;
            },
            check: bytes =>
            {
                if (OutboxItemFormat.TryDecode(bytes, 7, out var item, out var reason))
                {
                    decoded++;
                    Assert.NotNull(item);
                    Assert.True(item.Payload.Length <= bytes.Length && item.UpdateId.Length > 0);
                }
                else
                {
                    Assert.Null(item);
                    Assert.False(string.IsNullOrEmpty(reason));
                }
            },
            allowance: n => (16 << 10) + (4L * n));
        Assert.InRange(decoded, 1, 19_999);
    }
}
