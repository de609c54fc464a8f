using FedEdge.Compression;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Protocol.Tests;

internal sealed class ManualTime(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Keys and a valid signed update for the protocol tests.</summary>
internal sealed class ProtocolFixture : IDisposable
{
    public const string Federation = "fleet-a";
    public const string DeviceId = "pi-0007";

    public SigningKeyPair DeviceKey { get; } = SigningKeyPair.Generate(DeviceId);

    public SigningKeyPair CloudKey { get; } = SigningKeyPair.Generate("cloud-2026");

    public VerificationKeyRing DeviceKeys { get; }

    public VerificationKeyRing CloudKeys { get; }

    public ProtocolFixture()
    {
        DeviceKeys = new VerificationKeyRing(DeviceKey.VerificationKey);
        CloudKeys = new VerificationKeyRing(CloudKey.VerificationKey);
    }

    public UpdateEnvelopeVerifier Verifier(string federation = Federation) =>
        new(new UpdateVerifierOptions { Federation = federation }, DeviceKeys);

    public static UpdateEnvelope Envelope(float[] update, IUpdateCodec codec, string deviceId = DeviceId) => new()
    {
        Federation = Federation,
        DeviceId = deviceId,
        BaseModelVersion = 12,
        SampleCount = 640,
        Codec = codec.Spec,
        Dimension = update.Length,
        Payload = ByteString.CopyFrom(codec.Encode(update)),
        Metrics = new TrainingMetrics { Loss = 0.42, Accuracy = 0.87, Steps = 20, DurationMs = 1500 },
        ErrorFeedback = "ef14",
    };

    public byte[] SignedUpdate(int d = 1000, string spec = "sign", int seed = 1) =>
        new UpdateEnvelopeSigner(DeviceKey).Sign(Envelope(TestData.Gaussian(d, seed), UpdateCodecs.Parse(spec)));

    public void Dispose()
    {
        DeviceKey.Dispose();
        CloudKey.Dispose();
    }
}
