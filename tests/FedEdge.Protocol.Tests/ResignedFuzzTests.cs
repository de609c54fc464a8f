using FedEdge.Compression;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

/// <summary>
/// Fuzzing past the signature: the unsigned bytes of an envelope (or a cluster assignment) are mutated and then signed
/// with the valid key, so every check behind the signature sees hostile input. Each case must verify (and then decode
/// to finite values) or be refused with a reason and a message; nothing may throw or allocate beyond a bound of its
/// size. Deterministic seeds; 50,000 cases.
/// </summary>
public sealed class ResignedFuzzTests : IDisposable
{
    private readonly ProtocolFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static byte[] Unsigned(IMessage message) => message.ToByteArray();

    [Fact]
    public void Envelopes_mutated_and_resigned_with_the_device_key_verify_or_are_refused_with_a_reason()
    {
        byte[][] seeds = [.. new[] { ("fp32", 8), ("fp16", 12), ("topk:0.25", 16), ("sign:block=8", 24), ("fp32", 1) }.Select(s =>
        {
            var envelope = ProtocolFixture.Envelope(TestData.Gaussian(s.Item2, s.Item2), UpdateCodecs.Parse(s.Item1));
            envelope.UpdateId = UpdateEnvelopeSigner.NewUpdateId();
            envelope.Drift = new DriftStatistics { WindowIndex = 2, SampleCount = 10, LabelCount = 2, OutputDimension = 1, Prototype = { 0.5f, 1 }, LabelHistogram = { 4, 6 } };
            return Unsigned(envelope);
        })];
        var verifier = _f.Verifier();
        var accepted = 0;
        HostileBytes.Run(30_000, seed: 1501,
            input: random => SignedMessage.Sign(HostileBytes.Mutate(random, seeds[random.Next(seeds.Length)]), SignedMessage.UpdateEnvelopeDomain, _f.DeviceKey),
            check: bytes =>
            {
                var result = verifier.Verify(bytes, ProtocolFixture.DeviceId);
                if (!result.IsAccepted)
                {
                    Assert.NotEqual(RejectReason.None, result.Reason);
                    Assert.False(string.IsNullOrEmpty(result.Message));
                    return;
                }
                accepted++;
                var values = new float[result.Value.Dimension];
                if (result.Value.DecodeInto(values).IsValid) Assert.All(values, v => Assert.True(float.IsFinite(v)));
            },
            // A payload holds at least one bit per coordinate: the decode buffer is at most 32 bytes per input byte.
            allowance: n => (64 << 10) + (64L * n));
        Assert.InRange(accepted, 1, 29_999); // the mutations reach both outcomes
    }

    [Fact]
    public void Cluster_assignments_mutated_and_resigned_with_the_cloud_key_verify_or_are_refused_with_a_reason()
    {
        var assignment = new ClusterAssignment
        {
            Federation = ProtocolFixture.Federation,
            DeviceId = ProtocolFixture.DeviceId,
            Epoch = 4,
            LabelCount = 2,
            OutputDimension = 3,
            CreatedUnixMs = 1_760_000_000_000,
            CloudKeyId = _f.CloudKey.KeyId,
        };
        assignment.Clusters.Add(new AssignedCluster { Cluster = 3, Prior = 0.1f, LabelDistribution = { 0.25f, 0.75f }, ModelVersion = 7 });
        assignment.Clusters.Add(new AssignedCluster { Cluster = 5, Prior = 0.9f, LabelDistribution = { 0.5f, 0.5f }, ModelVersion = 2 });
        assignment.Centres.Add(Enumerable.Range(0, 2 * 2 * 3).Select(i => (i * 0.5f) - 2));
        assignment.CentreClusters.Add([3, 5]);
        var seed = Unsigned(assignment);
        var verifier = new ClusterAssignmentVerifier(ProtocolFixture.Federation, ProtocolFixture.DeviceId, _f.CloudKeys);
        var accepted = 0;
        HostileBytes.Run(20_000, seed: 1502,
            input: random => SignedMessage.Sign(HostileBytes.Mutate(random, seed), SignedMessage.ClusterAssignmentDomain, _f.CloudKey),
            check: bytes =>
            {
                var result = verifier.Verify(bytes);
                if (!result.IsAccepted)
                {
                    Assert.NotEqual(RejectReason.None, result.Reason);
                    Assert.False(string.IsNullOrEmpty(result.Message));
                    return;
                }
                accepted++;
                var a = result.Value;
                Assert.Equal((long)a.CentreClusters.Count * a.LabelCount * a.OutputDimension, a.Centres.Count);
                Assert.All(a.Centres, v => Assert.True(float.IsFinite(v)));
            },
            allowance: n => (64 << 10) + (16L * n));
        Assert.InRange(accepted, 1, 19_999);
    }
}
