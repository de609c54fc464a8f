using System.Buffers.Binary;
using System.Globalization;

namespace FedEdge.Cloud.Grains;

/// <summary>
/// The ids of a device's most recently accepted updates: a first-in, first-out set of at most
/// <see cref="Capacity"/> 16-byte ids, stored packed (16 bytes an id, oldest first).
/// <para>
/// The device's state is written with every accepted update, so the window's stored form matters: as 512 hex strings
/// it was ~20 kB per write (more than the 12.7 kB sign update it records) and its string-by-string serialisation grew
/// with the device's age; packed it is at most 8 kB, copied in one piece.
/// </para>
/// </summary>
public sealed class UpdateIdWindow
{
    public const int IdBytes = 16;

    private readonly UInt128[] _ring;
    private readonly HashSet<UInt128> _members;
    private int _oldest;

    public UpdateIdWindow(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _ring = new UInt128[capacity];
        _members = new HashSet<UInt128>(capacity);
    }

    public int Capacity => _ring.Length;

    public int Count => _members.Count;

    /// <summary>Whether <paramref name="updateId"/> (32 hex digits, as <c>VerifiedUpdate.UpdateIdHex</c>) is in the window.</summary>
    public bool Contains(string updateId) => _members.Contains(Parse(updateId));

    /// <summary>Adds the id, dropping the oldest beyond <see cref="Capacity"/>; false if it was already there.</summary>
    public bool Add(string updateId) => Add(Parse(updateId));

    private bool Add(UInt128 id)
    {
        if (!_members.Add(id)) return false;
        if (_members.Count > _ring.Length)
        {
            _members.Remove(_ring[_oldest]);
            _ring[_oldest] = id;
            _oldest = (_oldest + 1) % _ring.Length;
        }
        else
        {
            _ring[(_oldest + _members.Count - 1) % _ring.Length] = id;
        }
        return true;
    }

    /// <summary>The packed form, oldest id first.</summary>
    public byte[] ToBytes()
    {
        var bytes = new byte[Count * IdBytes];
        for (var i = 0; i < Count; i++)
            BinaryPrimitives.WriteUInt128BigEndian(bytes.AsSpan(i * IdBytes), _ring[(_oldest + i) % _ring.Length]);
        return bytes;
    }

    /// <summary>Restores a window from its packed form; a longer one keeps its newest <paramref name="capacity"/> ids.</summary>
    /// <exception cref="InvalidDataException">The length is not a multiple of 16 bytes.</exception>
    public static UpdateIdWindow FromBytes(int capacity, ReadOnlySpan<byte> packed)
    {
        if (packed.Length % IdBytes != 0)
            throw new InvalidDataException($"a packed update-id window has {packed.Length} bytes, not a multiple of {IdBytes}");
        var window = new UpdateIdWindow(capacity);
        for (var offset = 0; offset < packed.Length; offset += IdBytes)
            window.Add(BinaryPrimitives.ReadUInt128BigEndian(packed.Slice(offset, IdBytes)));
        return window;
    }

    private static UInt128 Parse(string updateId) =>
        updateId.Length == 2 * IdBytes && UInt128.TryParse(updateId, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var id)
            ? id
            : throw new ArgumentException($"update id '{updateId}' is not {IdBytes} bytes in hex", nameof(updateId));
}
