using System.Collections.Concurrent;
using System.Text;
using FedEdge.Edge.Outbox;

namespace FedEdge.Edge.Tests.Outbox;

public sealed class UpdateOutboxTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    private OutboxOptions Options(int maxItems = 100, long maxBytes = 1 << 20) =>
        new() { Directory = _dir.Combine("outbox"), MaxItems = maxItems, MaxBytes = maxBytes };

    private static byte[] Payload(string text) => Encoding.UTF8.GetBytes(text);

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Items_survive_a_restart_in_order_with_their_content()
    {
        using (var outbox = new UpdateOutbox(Options()))
        {
            for (var i = 0; i < 5; i++)
                await outbox.EnqueueAsync($"u{i}", Payload($"payload {i}"));
        }

        using var reopened = new UpdateOutbox(Options());
        Assert.Equal(5, reopened.Count);
        for (var i = 0; i < 5; i++)
        {
            var item = await reopened.PeekAsync();
            Assert.NotNull(item);
            Assert.Equal($"u{i}", item.UpdateId);
            Assert.Equal($"payload {i}", Encoding.UTF8.GetString(item.Payload.Span));
            await reopened.RemoveAsync(item);
        }
        Assert.Null(await reopened.PeekAsync());
        Assert.Equal(0, reopened.Bytes);
    }

    [Fact]
    public async Task Sequence_continues_after_restart_so_new_items_go_after_old_ones()
    {
        using (var outbox = new UpdateOutbox(Options()))
        {
            await outbox.EnqueueAsync("old-1", Payload("a"));
            await outbox.EnqueueAsync("old-2", Payload("b"));
        }
        using var reopened = new UpdateOutbox(Options());
        var added = await reopened.EnqueueAsync("new", Payload("c"));
        Assert.Equal(3, added.Sequence);
        Assert.Equal(new long[] { 1, 2, 3 }, reopened.PendingSequences);
        Assert.Equal("old-1", (await reopened.PeekAsync())!.UpdateId);
    }

    [Fact]
    public async Task Peek_does_not_remove_until_acknowledged()
    {
        using var outbox = new UpdateOutbox(Options());
        await outbox.EnqueueAsync("u1", Payload("x"));
        var first = await outbox.PeekAsync();
        var again = await outbox.PeekAsync();
        Assert.Equal(first!.Sequence, again!.Sequence);
        await outbox.RemoveAsync(first);
        await outbox.RemoveAsync(first); // removing twice is harmless
        Assert.Equal(0, outbox.Count);
        Assert.Empty(Directory.GetFiles(Options().Directory, "*.upd"));
    }

    [Fact]
    public async Task Refuses_beyond_the_item_bound_and_keeps_what_was_accepted()
    {
        using var outbox = new UpdateOutbox(Options(maxItems: 3));
        for (var i = 0; i < 3; i++)
            await outbox.EnqueueAsync($"u{i}", Payload("x"));
        var error = await Assert.ThrowsAsync<OutboxFullException>(() => outbox.EnqueueAsync("u3", Payload("x")));
        Assert.Contains("u3", error.Message);
        Assert.Contains("3/3 items", error.Message);
        Assert.Equal(3, outbox.Count);

        // Draining one makes room again.
        await outbox.RemoveAsync((await outbox.PeekAsync())!);
        await outbox.EnqueueAsync("u4", Payload("x"));
        Assert.Equal(["u1", "u2", "u4"], await DrainIds(outbox));
    }

    [Fact]
    public async Task Refuses_beyond_the_byte_bound()
    {
        using var outbox = new UpdateOutbox(Options(maxBytes: 400));
        var accepted = await outbox.EnqueueAsync("u0", new byte[200]);
        Assert.True(accepted.FileBytes > 200);
        await Assert.ThrowsAsync<OutboxFullException>(() => outbox.EnqueueAsync("u1", new byte[200]));
        await outbox.EnqueueAsync("u2", new byte[50]); // a smaller item still fits
        Assert.True(outbox.Bytes <= 400);
        Assert.Equal(["u0", "u2"], await DrainIds(outbox));
    }

    [Fact]
    public async Task Corrupt_files_are_quarantined_and_the_next_item_is_returned()
    {
        var options = Options();
        using (var outbox = new UpdateOutbox(options))
        {
            await outbox.EnqueueAsync("u1", Payload("first"));
            await outbox.EnqueueAsync("u2", Payload("second"));
            await outbox.EnqueueAsync("u3", Payload("third"));
        }
        var files = Directory.GetFiles(options.Directory, "*.upd").Order().ToArray();
        // Flip one payload bit in the first item and truncate the second.
        var bytes = File.ReadAllBytes(files[0]);
        bytes[^40] ^= 0x01;
        File.WriteAllBytes(files[0], bytes);
        File.WriteAllBytes(files[1], File.ReadAllBytes(files[1])[..20]);
        // A stray file whose name is not a sequence number.
        File.WriteAllText(Path.Combine(options.Directory, "stray.upd"), "junk");

        using var reopened = new UpdateOutbox(options);
        var item = await reopened.PeekAsync();
        Assert.Equal("u3", item!.UpdateId);
        Assert.Equal("third", Encoding.UTF8.GetString(item.Payload.Span));
        Assert.Equal(1, reopened.Count);
        var quarantined = Directory.GetFiles(Path.Combine(options.Directory, UpdateOutbox.QuarantineDirectoryName));
        Assert.Equal(3, quarantined.Length);
    }

    [Fact]
    public async Task A_failed_write_such_as_a_full_disk_changes_nothing_already_accepted()
    {
        using var outbox = new UpdateOutbox(Options());
        await outbox.EnqueueAsync("kept", Payload("kept payload"));
        outbox.WrapWriteStream = inner => new FailingStream(inner, failAfterBytes: 10);
        await Assert.ThrowsAsync<IOException>(() => outbox.EnqueueAsync("lost", new byte[1000]));
        outbox.WrapWriteStream = null;

        Assert.Equal(1, outbox.Count);
        Assert.Empty(Directory.GetFiles(Options().Directory, "*.tmp", SearchOption.AllDirectories));
        await outbox.EnqueueAsync("after", Payload("fine"));

        using var reopened = new UpdateOutbox(Options());
        Assert.Equal(["kept", "after"], await DrainIds(reopened));
    }

    [Fact]
    public async Task Leftover_temporary_files_from_a_crash_are_deleted_on_open()
    {
        var options = Options();
        Directory.CreateDirectory(options.Directory);
        var temp = Path.Combine(options.Directory, ".00000000000000000001.upd.123.abc.tmp");
        File.WriteAllText(temp, "half-written");
        using var outbox = new UpdateOutbox(options);
        Assert.False(File.Exists(temp));
        Assert.Equal(0, outbox.Count);
    }

    [Fact]
    public async Task Concurrent_producers_and_a_consumer_lose_and_duplicate_nothing()
    {
        var options = Options(maxItems: 10_000);
        options.Fsync = false;
        using var outbox = new UpdateOutbox(options);
        const int producers = 4, perProducer = 50;
        var received = new ConcurrentQueue<string>();
        using var done = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        var consumer = Task.Run(async () =>
        {
            while (received.Count < producers * perProducer)
            {
                await outbox.WaitForItemsAsync(done.Token);
                var item = await outbox.PeekAsync(done.Token);
                if (item is null)
                    continue;
                received.Enqueue(item.UpdateId);
                await outbox.RemoveAsync(item, done.Token);
            }
        });
        var producing = Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < perProducer; i++)
                await outbox.EnqueueAsync($"p{p}-{i:D3}", Payload($"{p}/{i}"), done.Token);
        }));
        await Task.WhenAll(producing);
        await consumer;

        var ids = received.ToArray();
        Assert.Equal(producers * perProducer, ids.Distinct().Count());
        Assert.Equal(producers * perProducer, ids.Length);
        // FIFO: each producer's items come out in the order it put them in.
        for (var p = 0; p < producers; p++)
        {
            var mine = ids.Where(id => id.StartsWith($"p{p}-", StringComparison.Ordinal)).ToArray();
            Assert.Equal(mine.Order(StringComparer.Ordinal), mine);
        }
        Assert.Equal(0, outbox.Count);
    }

    private static async Task<List<string>> DrainIds(UpdateOutbox outbox)
    {
        var ids = new List<string>();
        while (await outbox.PeekAsync() is { } item)
        {
            ids.Add(item.UpdateId);
            await outbox.RemoveAsync(item);
        }
        return ids;
    }

    private sealed class FailingStream(Stream inner, long failAfterBytes) : Stream
    {
        private long _written;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _written;
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > failAfterBytes)
                throw new IOException("No space left on device");
            inner.Write(buffer);
            _written += buffer.Length;
        }
    }
}
