namespace FedEdge.Data.Tests;

public sealed class NpyArrayTests
{
    [Fact]
    public void ReadsArraysWrittenByNumpy()
    {
        using var dir = new TempDirectory();
        SystemPython.Run("""
            import sys, numpy as np
            d = sys.argv[1]
            np.save(d + '/f4.npy', (np.arange(24, dtype=np.float32) / 7).reshape(2, 3, 4))
            np.save(d + '/f8.npy', np.array([1e-300, -2.5, np.pi]))
            np.save(d + '/i4.npy', np.array([[-1, 2], [3, 2147483647]], dtype=np.int32))
            np.save(d + '/i8.npy', np.array([0, -9000000000, 9], dtype=np.int64))
            np.save(d + '/scalar.npy', np.float32(3.5))
            np.save(d + '/empty.npy', np.zeros((0, 5), dtype=np.float32))
            np.save(d + '/fortran.npy', np.asfortranarray(np.ones((2, 3), dtype=np.float32)))
            np.save(d + '/u1.npy', np.ones(3, dtype=np.uint8))
            with open(d + '/v2.npy', 'wb') as f: np.lib.format.write_array(f, np.arange(6, dtype=np.int64).reshape(3, 2), version=(2, 0))
            with open(d + '/v3.npy', 'wb') as f: np.lib.format.write_array(f, np.ones(2, dtype=np.float32), version=(3, 0))
            """, dir.Path);

        var f4 = NpyArray.Read(dir.Combine("f4.npy"));
        Assert.Equal(NpyDataType.Float32, f4.DataType);
        Assert.Equal([2, 3, 4], f4.Shape);
        Assert.Equal(Enumerable.Range(0, 24).Select(i => i / 7f), (float[])f4.Data);

        var f8 = NpyArray.Read(dir.Combine("f8.npy"));
        Assert.Equal([1e-300, -2.5, Math.PI], (double[])f8.Data);
        Assert.Equal([3], f8.Shape);

        var i4 = NpyArray.Read(dir.Combine("i4.npy"));
        Assert.Equal([-1, 2, 3, int.MaxValue], (int[])i4.Data);
        Assert.Equal([-1L, 2, 3, int.MaxValue], i4.ToInt64());

        Assert.Equal([0L, -9000000000, 9], (long[])NpyArray.Read(dir.Combine("i8.npy")).Data);

        var scalar = NpyArray.Read(dir.Combine("scalar.npy"));
        Assert.Empty(scalar.Shape);
        Assert.Equal([3.5f], (float[])scalar.Data);

        var empty = NpyArray.Read(dir.Combine("empty.npy"));
        Assert.Equal([0, 5], empty.Shape);
        Assert.Equal(0, empty.Length);

        var v2 = NpyArray.Read(dir.Combine("v2.npy"));
        Assert.Equal([3, 2], v2.Shape);
        Assert.Equal([0L, 1, 2, 3, 4, 5], (long[])v2.Data);
        Assert.Equal([1f, 1f], (float[])NpyArray.Read(dir.Combine("v3.npy")).Data);

        Assert.Contains("Fortran", Assert.Throws<InvalidDataException>(() => NpyArray.Read(dir.Combine("fortran.npy"))).Message);
        Assert.Contains("'|u1'", Assert.Throws<InvalidDataException>(() => NpyArray.Read(dir.Combine("u1.npy"))).Message);
    }

    [Fact]
    public void NumpyReadsArraysWrittenByFedEdge()
    {
        using var dir = new TempDirectory();
        var floats = Enumerable.Range(0, 60).Select(i => MathF.Sin(i) * 1e3f).ToArray();
        NpyArray.Write<float>(dir.Combine("f4.npy"), floats, [3, 4, 5]);
        NpyArray.Write<double>(dir.Combine("f8.npy"), [double.Epsilon, -0.0, 1e308], [3]);
        NpyArray.Write<int>(dir.Combine("i4.npy"), [int.MinValue, 7], [2, 1]);
        NpyArray.Write<long>(dir.Combine("i8.npy"), [long.MaxValue], [1]);
        NpyArray.Write<float>(dir.Combine("scalar.npy"), [2.25f], []);

        string output = SystemPython.Run("""
            import sys, numpy as np
            d = sys.argv[1]
            f4 = np.load(d + '/f4.npy')
            ref = (np.sin(np.arange(60, dtype=np.float32)).astype(np.float32) * np.float32(1e3)).reshape(3, 4, 5)
            assert f4.dtype == np.float32 and f4.shape == (3, 4, 5) and f4.flags['C_CONTIGUOUS']
            print(float(np.abs(f4 - ref).max()))
            f8 = np.load(d + '/f8.npy'); assert f8.dtype == np.float64
            assert f8[0] == 5e-324 and np.signbit(f8[1]) and f8[2] == 1e308, f8
            i4 = np.load(d + '/i4.npy'); assert i4.dtype == np.int32 and i4.shape == (2, 1) and i4[0, 0] == -2**31
            i8 = np.load(d + '/i8.npy'); assert i8.dtype == np.int64 and i8[0] == 2**63 - 1
            s = np.load(d + '/scalar.npy'); assert s.shape == () and s == 2.25
            with open(d + '/f4.npy', 'rb') as f: header_end = 10 + int.from_bytes(f.read(10)[8:10], 'little')
            assert header_end % 64 == 0, header_end
            print('ok')
            """, dir.Path);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // MathF.Sin and numpy's float32 sin may differ in the last ulp; anything larger is a data error.
        Assert.InRange(double.Parse(lines[0]), 0, 1e-3);
        Assert.Equal("ok", lines[1]);
    }

    [Fact]
    public void RoundTripsThroughStreams()
    {
        var data = new long[] { 1, -2, 3, -4, 5, -6 };
        using var stream = new MemoryStream();
        NpyArray.Create(data, 2, 3).Write(stream);
        stream.Position = 0;
        var back = NpyArray.Read(stream);
        Assert.Equal(NpyDataType.Int64, back.DataType);
        Assert.Equal([2, 3], back.Shape);
        Assert.Equal(data, (long[])back.Data);
    }

    [Fact]
    public void RejectsBadInput()
    {
        Assert.Throws<ArgumentException>(() => NpyArray.Write<float>(new MemoryStream(), new float[5], [2, 3]));
        Assert.Contains("magic", Assert.Throws<InvalidDataException>(() => NpyArray.Read(new MemoryStream("not npy at all"u8.ToArray()))).Message);

        using var stream = new MemoryStream();
        NpyArray.Write<float>(stream, new float[100], [100]);
        var truncated = stream.ToArray()[..^4];
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => NpyArray.Read(new MemoryStream(truncated))).Message);
    }
}
