using FedEdge.Cloud.Clustering;
using FedEdge.Cloud.Grains;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Storage;
using FedEdge.Protocol.Messages;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// The cloud's readers of device statistics and of its own files, on hostile bytes: FedDAA drift statistics (parsed
/// and checked), update-log records (header and metadata) and chunk-spool files. Each case must be read or refused (the
/// documented way: false, null, <see cref="InvalidProtocolBufferException"/> from the parser), never throw otherwise,
/// and allocate no more than its size allows. Deterministic seeds; 45,000 cases.
/// </summary>
public sealed class StoredFormatFuzzTests
{
    [Fact]
    public void Drift_statistics_are_read_or_refused_with_a_problem()
    {
        var valid = new DriftStatistics
        {
            WindowIndex = 3,
            SampleCount = 40,
            LabelCount = 2,
            OutputDimension = 2,
            Prototype = { 0.1f, 0.2f, 0.3f, 0.4f },
            PreviousPrototype = { 0.1f, 0.2f, 0.3f, 0.5f },
            LabelHistogram = { 10, 30 },
            ClusterLabelWeights = { 5, 10, 5, 20 },
            Clusters = { 1, 2 },
            AssignmentEpoch = 2,
        }.ToByteArray();
        Assert.True(DriftStatisticsCheck.TryRead(DriftStatistics.Parser.ParseFrom(valid), DateTimeOffset.UnixEpoch, out _, out _));
        var read = 0;
        HostileBytes.Run(20_000, seed: 1504,
            input: random => random.Next(10) == 0 ? HostileBytes.Random(random, 200) : HostileBytes.Mutate(random, valid),
            check: bytes =>
            {
                DriftStatistics drift;
                try
                {
                    drift = DriftStatistics.Parser.ParseFrom(bytes);
                }
                catch (InvalidProtocolBufferException)
                {
                    return;
                }
                if (DriftStatisticsCheck.TryRead(drift, DateTimeOffset.UnixEpoch, out var statistics, out var problem))
                {
                    read++;
                    Assert.NotNull(statistics);
                    Assert.True(statistics.Prototype.Length <= DriftStatisticsCheck.MaxPrototypeValues);
                    Assert.All(statistics.Prototype, v => Assert.True(float.IsFinite(v)));
                }
                else
                {
                    Assert.False(string.IsNullOrEmpty(problem));
                }
            },
            allowance: n => (16 << 10) + (16L * n));
        Assert.InRange(read, 1, 19_999);
    }

    [Fact]
    public void Update_log_records_are_read_or_refused()
    {
        var update = new LoggedUpdate(new PendingUpdate("dev-1", "00112233445566778899AABBCCDDEEFF", 3, 40, 123, 0.5, DateTimeOffset.UnixEpoch), new byte[123]);
        var head = UpdateLogRecord.EncodeHead(update);
        byte[] record = [.. head, .. update.Envelope.ToArray()];
        const int maxEnvelope = 1 << 20;
        var read = 0;
        HostileBytes.Run(20_000, seed: 1505,
            input: random =>
            {
                var bytes = HostileBytes.Mutate(random, record);
                // Half the cases resealed: the hash recomputed over what the header's lengths cover, so the mutation
                // reaches the metadata fields instead of stopping at the hash.
                if (random.Next(2) == 0 && bytes.Length >= UpdateLogRecord.HeaderBytes
                    && UpdateLogRecord.TryReadHeader(bytes, maxEnvelope, out var m, out var e, out _)
                    && bytes.Length - UpdateLogRecord.HeaderBytes >= (long)m + e)
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(8),
                        System.IO.Hashing.XxHash3.HashToUInt64(bytes.AsSpan(UpdateLogRecord.HeaderBytes, m + e)));
                return bytes;
            },
            check: bytes =>
            {
                if (bytes.Length < UpdateLogRecord.HeaderBytes) return; // a torn header: the reader stops there
                if (!UpdateLogRecord.TryReadHeader(bytes, maxEnvelope, out var metadataLength, out var envelopeLength, out var hash)) return;
                Assert.InRange(envelopeLength, 0, maxEnvelope);
                var body = bytes.AsSpan(UpdateLogRecord.HeaderBytes);
                if (body.Length < (long)metadataLength + envelopeLength) return; // torn: the reader cuts the tail
                var decoded = UpdateLogRecord.TryDecode(body[..metadataLength], body.Slice(metadataLength, envelopeLength).ToArray(), hash);
                if (decoded is not null)
                {
                    read++;
                    Assert.Equal(envelopeLength, decoded.Envelope.Length);
                }
            },
            allowance: n => (16 << 10) + (8L * n));
        Assert.InRange(read, 1, 19_999);
    }

    [Fact]
    public void Chunk_spool_files_are_read_frame_by_frame_or_cut_at_the_first_bad_length()
    {
        using var data = new TempDirectory();
        var spool = new ChunkSpool(data.Path, flushToDisk: false, NullLogger.Instance);
        const string updateId = "00112233445566778899AABBCCDDEEFF";
        spool.Append("dev-1", updateId, new byte[300]);
        spool.Append("dev-1", updateId, new byte[7]);
        spool.Append("dev-1", updateId, new byte[1000]);
        var file = Directory.GetFiles(data.Path, "*.spool", SearchOption.AllDirectories).Single();
        var valid = File.ReadAllBytes(file);
        var frames = 0;
        HostileBytes.Run(5_000, seed: 1506,
            input: random => HostileBytes.Mutate(random, valid),
            check: bytes =>
            {
                File.WriteAllBytes(file, bytes);
                var read = spool.Read("dev-1", updateId);
                frames += read.Count;
                Assert.True(read.Sum(f => (long)f.Length + 4) <= bytes.Length);
                Assert.True(new FileInfo(file).Length <= bytes.Length); // a torn tail is cut, nothing is added
            },
            allowance: n => (64 << 10) + (8L * n));
        Assert.True(frames > 0);
    }
}
