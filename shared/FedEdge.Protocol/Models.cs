using System.Security.Cryptography;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol;

public sealed class ModelPublishOptions
{
    public int ChunkSize { get; init; } = 256 << 10;

    public string ModelFormat { get; init; } = "onnx";

    /// <summary>Number of float parameters d (devices size their update vectors with it).</summary>
    public long ParameterCount { get; init; }

    /// <summary>Codec specs the cloud suggests, best first (e.g. "sign:block=4096").</summary>
    public IReadOnlyList<string> CodecHints { get; init; } = [];

    /// <summary>
    /// Cluster model number (FedDAA): 0 is the federation's own model on <see cref="MqttTopics.Model"/>; c &gt; 0 is
    /// announced on <see cref="MqttTopics.ClusterModel"/> with its chunks under it, and the signed announcement says c.
    /// </summary>
    public int Cluster { get; init; }

    /// <summary>
    /// FedDAA: the cluster's label distribution P_c(y) for this version (cluster &gt; 0 only; empty = unknown). Finite,
    /// non-negative, summing to 1 (±<see cref="LabelDistributions.SumTolerance"/>); signed with the announcement.
    /// </summary>
    public IReadOnlyList<float> LabelDistribution { get; init; } = [];

    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>What devices compute from this model (<see cref="AlgorithmSpec"/>; empty = FedAvg).</summary>
    public string Algorithm { get; init; } = "";

    /// <summary>FedMM: float32 statistics Ŝ appended to the model bytes (see <see cref="ModelBundle"/>); 0 = none.</summary>
    public long StatisticsCount { get; init; }

    /// <summary>FAR-SIGN: the version's work seed (directions are generated from it and the device id).</summary>
    public ulong WorkSeed { get; init; }
}

/// <summary>A model ready to publish: the signed, retained announcement and the serialized chunks.</summary>
public sealed record PublishedModel(ModelAnnouncement Announcement, byte[] AnnouncementBytes, IReadOnlyList<byte[]> Chunks)
{
    /// <summary>(topic, payload) pairs, announcement last so devices never see an announcement before its chunks.</summary>
    public IEnumerable<(string Topic, byte[] Payload)> Messages()
    {
        for (int i = 0; i < Chunks.Count; i++)
        {
            yield return (ChunkTopic(Announcement.Federation, Announcement.Cluster, Announcement.ModelVersion, i), Chunks[i]);
        }
        yield return (AnnouncementTopic(Announcement.Federation, Announcement.Cluster), AnnouncementBytes);
    }

    /// <summary>Where the announcement of a federation's model (cluster 0) or of cluster model c &gt; 0 is retained.</summary>
    public static string AnnouncementTopic(string federation, int cluster) =>
        cluster == 0 ? MqttTopics.Model(federation) : MqttTopics.ClusterModel(federation, cluster);

    /// <summary>Where chunk <paramref name="index"/> of a version of a federation's model or cluster model is retained.</summary>
    public static string ChunkTopic(string federation, int cluster, long version, int index) =>
        cluster == 0 ? MqttTopics.ModelChunk(federation, version, index) : MqttTopics.ClusterModelChunk(federation, cluster, version, index);
}

/// <summary>Cloud side: splits a model into chunks and signs its announcement with the cloud key.</summary>
public sealed class ModelPublisher(SigningKeyPair cloudKey)
{
    public PublishedModel Publish(string federation, long version, ReadOnlySpan<byte> model, ModelPublishOptions? options = null)
    {
        options ??= new ModelPublishOptions();
        ArgumentException.ThrowIfNullOrEmpty(federation);
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        ArgumentOutOfRangeException.ThrowIfNegative(options.Cluster, nameof(options.Cluster));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ChunkSize, 1024, nameof(options.ChunkSize));
        if (LabelDistributions.Check(options.LabelDistribution, options.Cluster) is { } problem)
        {
            throw new ArgumentException($"Model v{version} of cluster {options.Cluster}: {problem}.", nameof(options));
        }
        if (model.IsEmpty)
        {
            throw new ArgumentException("The model is empty.", nameof(model));
        }
        int count = (model.Length + options.ChunkSize - 1) / options.ChunkSize;
        var announcement = new ModelAnnouncement
        {
            Federation = federation,
            ModelVersion = version,
            ModelSha256 = ByteString.CopyFrom(SHA256.HashData(model)),
            TotalSize = model.Length,
            ChunkSize = options.ChunkSize,
            ChunkCount = count,
            CreatedUnixMs = options.Time.GetUtcNow().ToUnixTimeMilliseconds(),
            ModelFormat = options.ModelFormat,
            ParameterCount = options.ParameterCount,
            Cluster = options.Cluster,
            CloudKeyId = cloudKey.KeyId,
            Algorithm = options.Algorithm,
            StatisticsCount = options.StatisticsCount,
            WorkSeed = options.WorkSeed,
        };
        announcement.CodecHints.Add(options.CodecHints);
        announcement.LabelDistribution.Add(options.LabelDistribution);
        byte[] signed = SignedMessage.Sign(announcement.ToByteArray(), SignedMessage.ModelAnnouncementDomain, cloudKey);
        var chunks = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            int start = i * options.ChunkSize;
            chunks[i] = new ModelChunk
            {
                Federation = federation,
                ModelVersion = version,
                Index = i,
                Data = ByteString.CopyFrom(model.Slice(start, Math.Min(options.ChunkSize, model.Length - start))),
            }.ToByteArray();
        }
        return new PublishedModel(ModelAnnouncement.Parser.ParseFrom(signed), signed, chunks);
    }
}

/// <summary>
/// Device side: decodes and verifies a retained model announcement (cloud signature, federation, sizes). With
/// <paramref name="cluster"/> set it also requires the signed cluster number to be that one, so an announcement of one
/// cluster model cannot be passed off on another cluster's topic (0 = the federation's own model).
/// </summary>
public sealed class ModelAnnouncementVerifier(string federation, IVerificationKeys cloudKeys, long maxModelBytes = 1L << 30, int? cluster = null)
{
    public long MaxModelBytes => maxModelBytes;

    public Decoded<ModelAnnouncement> Verify(ReadOnlySpan<byte> announcementBytes)
    {
        if (announcementBytes.Length > 1 << 20)
        {
            return Reject(RejectReason.Oversized, $"Announcement of {announcementBytes.Length} bytes exceeds 1 MiB.");
        }
        ModelAnnouncement a;
        try
        {
            a = ModelAnnouncement.Parser.ParseFrom(announcementBytes);
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or ArgumentException or InvalidOperationException)
        {
            return Reject(RejectReason.Malformed, $"Not a ModelAnnouncement: {e.Message}");
        }
        if (a.Federation != federation)
        {
            return Reject(RejectReason.WrongFederation, $"Announcement for federation '{UpdateEnvelopeVerifier.Printable(a.Federation)}' received by '{federation}'.");
        }
        if (!cloudKeys.TryGet(a.CloudKeyId, out VerificationKey? key))
        {
            return Reject(RejectReason.UnknownKey, $"No cloud key '{UpdateEnvelopeVerifier.Printable(a.CloudKeyId)}' is trusted.");
        }
        (RejectReason reason, string? message) = SignedMessage.Verify(announcementBytes, SignedMessage.ModelAnnouncementDomain, key);
        if (reason != RejectReason.None)
        {
            return Reject(reason, $"Model announcement v{a.ModelVersion}: {message}");
        }
        if (cluster is int expected && a.Cluster != expected)
        {
            return Reject(RejectReason.Inconsistent, $"Model announcement v{a.ModelVersion} is for cluster {a.Cluster}, expected cluster {expected}.");
        }
        if (a.ModelSha256.Length != 32 || a.ModelVersion < 0)
        {
            return Reject(RejectReason.Malformed, $"Model announcement v{a.ModelVersion} lacks a 32-byte SHA-256 or has a negative version.");
        }
        if (LabelDistributions.Check(a.LabelDistribution, a.Cluster) is { } labels)
        {
            return Reject(RejectReason.Malformed, $"Model announcement v{a.ModelVersion} of cluster {a.Cluster}: {labels}.");
        }
        if (a.TotalSize > maxModelBytes)
        {
            return Reject(RejectReason.Oversized, $"Model v{a.ModelVersion} has {a.TotalSize} bytes; the limit is {maxModelBytes}.");
        }
        if (a.TotalSize < 1 || a.ChunkSize < 1 || a.ChunkCount != (a.TotalSize + a.ChunkSize - 1) / a.ChunkSize)
        {
            return Reject(RejectReason.Inconsistent, $"Model v{a.ModelVersion}: {a.ChunkCount} chunks of {a.ChunkSize} bytes cannot hold {a.TotalSize} bytes.");
        }
        if (a.StatisticsCount < 0 || a.StatisticsCount * sizeof(float) >= a.TotalSize)
        {
            return Reject(RejectReason.Inconsistent, $"Model v{a.ModelVersion}: {a.StatisticsCount} statistics do not fit in {a.TotalSize} model bytes.");
        }
        if (a.Algorithm.Length > AlgorithmSpec.MaxLength || (a.Algorithm.Length > 0 && !AlgorithmSpec.TryParse(a.Algorithm, out _, out var bad)))
        {
            return Reject(RejectReason.Malformed, $"Model v{a.ModelVersion}: algorithm '{UpdateEnvelopeVerifier.Printable(a.Algorithm)}' is not valid.");
        }
        return Decoded<ModelAnnouncement>.Accept(a);
    }

    private static Decoded<ModelAnnouncement> Reject(RejectReason reason, string message) => Decoded<ModelAnnouncement>.Reject(reason, message);
}

public enum ChunkOutcome
{
    Stored,
    Duplicate,
    Rejected,
}

/// <summary>
/// Device side: collects the chunks of one verified announcement (any order, duplicates ignored) and
/// returns the model bytes only when all are in and their SHA-256 matches the signed announcement.
/// </summary>
public sealed class ModelAssembler
{
    private readonly byte[] _buffer;
    private readonly bool[] _received;
    private int _receivedCount;

    private ModelAssembler(ModelAnnouncement announcement)
    {
        Announcement = announcement;
        _buffer = new byte[announcement.TotalSize];
        _received = new bool[announcement.ChunkCount];
    }

    public ModelAnnouncement Announcement { get; }

    public bool IsComplete => _receivedCount == _received.Length;

    public int MissingCount => _received.Length - _receivedCount;

    /// <summary>Verifies the announcement (signature included) and prepares to collect its chunks.</summary>
    public static Decoded<ModelAssembler> Start(ReadOnlySpan<byte> announcementBytes, ModelAnnouncementVerifier verifier)
    {
        Decoded<ModelAnnouncement> announcement = verifier.Verify(announcementBytes);
        return announcement.IsAccepted
            ? Decoded<ModelAssembler>.Accept(new ModelAssembler(announcement.Value))
            : Decoded<ModelAssembler>.Reject(announcement.Reason, announcement.Message!);
    }

    /// <summary>Indices of the chunks still missing (to re-request or to wait for).</summary>
    public IEnumerable<int> MissingChunks() => Enumerable.Range(0, _received.Length).Where(i => !_received[i]);

    public (ChunkOutcome Outcome, RejectReason Reason, string? Message) AddChunk(ReadOnlySpan<byte> chunkBytes)
    {
        ModelChunk chunk;
        try
        {
            chunk = ModelChunk.Parser.ParseFrom(chunkBytes);
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or ArgumentException or InvalidOperationException)
        {
            return (ChunkOutcome.Rejected, RejectReason.Malformed, $"Not a ModelChunk: {e.Message}");
        }
        ModelAnnouncement a = Announcement;
        if (chunk.Federation != a.Federation)
        {
            return (ChunkOutcome.Rejected, RejectReason.WrongFederation, $"Chunk for federation '{UpdateEnvelopeVerifier.Printable(chunk.Federation)}'.");
        }
        if (chunk.ModelVersion != a.ModelVersion || chunk.Index < 0 || chunk.Index >= a.ChunkCount)
        {
            return (ChunkOutcome.Rejected, RejectReason.Inconsistent, $"Chunk v{chunk.ModelVersion}#{chunk.Index} does not belong to model v{a.ModelVersion} ({a.ChunkCount} chunks).");
        }
        long start = (long)chunk.Index * a.ChunkSize;
        long expected = Math.Min(a.ChunkSize, a.TotalSize - start);
        if (chunk.Data.Length != expected)
        {
            return (ChunkOutcome.Rejected, chunk.Data.Length < expected ? RejectReason.Truncated : RejectReason.Oversized, $"Chunk {chunk.Index} has {chunk.Data.Length} bytes, expected {expected}.");
        }
        if (_received[chunk.Index])
        {
            return (ChunkOutcome.Duplicate, RejectReason.None, null);
        }
        chunk.Data.Span.CopyTo(_buffer.AsSpan((int)start));
        _received[chunk.Index] = true;
        _receivedCount++;
        return (ChunkOutcome.Stored, RejectReason.None, null);
    }

    /// <summary>The verified model bytes, or a rejection (Truncated while chunks are missing, HashMismatch).
    /// After a hash mismatch the chunks are forgotten so that fresh copies can be collected.</summary>
    public Decoded<byte[]> TryComplete()
    {
        if (!IsComplete)
        {
            return Decoded<byte[]>.Reject(RejectReason.Truncated, $"Model v{Announcement.ModelVersion}: {MissingCount} of {_received.Length} chunks missing.");
        }
        if (!SHA256.HashData(_buffer).AsSpan().SequenceEqual(Announcement.ModelSha256.Span))
        {
            Array.Clear(_received);
            _receivedCount = 0;
            return Decoded<byte[]>.Reject(RejectReason.HashMismatch, $"Model v{Announcement.ModelVersion}: SHA-256 of the assembled bytes does not match the signed announcement.");
        }
        return Decoded<byte[]>.Accept(_buffer);
    }
}

/// <summary>The rule for a label distribution P_c(y) carried by a signed cloud message (model announcement).</summary>
public static class LabelDistributions
{
    /// <summary>How far the sum of P_c(y) may be from 1 (float rounding of R terms).</summary>
    public const float SumTolerance = 1e-3f;

    /// <summary>Largest R accepted.</summary>
    public const int MaxLabels = 65_536;

    /// <summary>Null when <paramref name="distribution"/> is empty or a valid P_c(y) of cluster <paramref name="cluster"/> &gt; 0; else what is wrong.</summary>
    public static string? Check(IReadOnlyList<float> distribution, int cluster)
    {
        ArgumentNullException.ThrowIfNull(distribution);
        if (distribution.Count == 0)
        {
            return null;
        }
        if (cluster <= 0)
        {
            return "a label distribution belongs to a cluster model (cluster > 0)";
        }
        if (distribution.Count > MaxLabels)
        {
            return $"label distribution has {distribution.Count} labels, more than {MaxLabels}";
        }
        double sum = 0;
        for (int r = 0; r < distribution.Count; r++)
        {
            float p = distribution[r];
            if (!float.IsFinite(p) || p < 0)
            {
                return $"label distribution entry {r} is {p}; entries are finite and non-negative";
            }
            sum += p;
        }
        return Math.Abs(sum - 1) > SumTolerance ? $"label distribution sums to {sum}, not 1" : null;
    }
}
