using FedEdge.Cloud.Grains;

namespace FedEdge.Cloud.Tests;

public class UpdateIdWindowTests
{
    private static string Id(int n) => n.ToString("x32", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Worked example: capacity 3, ids 1..5 added in order: the window keeps 3, 4, 5, packed oldest first.</summary>
    [Fact]
    public void Keeps_the_newest_ids_and_packs_them_oldest_first()
    {
        var window = new UpdateIdWindow(3);
        for (var n = 1; n <= 5; n++) Assert.True(window.Add(Id(n)));
        Assert.False(window.Add(Id(5)));
        Assert.Equal(3, window.Count);
        Assert.False(window.Contains(Id(2)));
        Assert.True(window.Contains(Id(3)) && window.Contains(Id(5)));

        var packed = window.ToBytes();
        Assert.Equal(3 * 16, packed.Length);
        Assert.Equal(3, packed[15]); // big-endian: the oldest id's last byte
        Assert.Equal(5, packed[47]);

        // Restored into a smaller window: the newest ids stay, and adding evicts in the original order.
        var restored = UpdateIdWindow.FromBytes(2, packed);
        Assert.False(restored.Contains(Id(3)));
        Assert.True(restored.Add(Id(6)));
        Assert.False(restored.Contains(Id(4)));
        Assert.True(restored.Contains(Id(5)) && restored.Contains(Id(6)));
    }

    [Fact]
    public void Ids_compare_by_value_whatever_the_hex_case()
    {
        var window = new UpdateIdWindow(4);
        window.Add("00000000000000000000000000ABCDEF");
        Assert.True(window.Contains("00000000000000000000000000abcdef"));
    }

    [Fact]
    public void Malformed_ids_and_packed_forms_are_refused_with_what_was_wrong()
    {
        var window = new UpdateIdWindow(4);
        Assert.Contains("'abc'", Assert.Throws<ArgumentException>(() => window.Add("abc")).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => window.Add(new string('g', 32)));
        Assert.Contains("17 bytes", Assert.Throws<InvalidDataException>(() => UpdateIdWindow.FromBytes(4, new byte[17])).Message, StringComparison.Ordinal);
    }
}
