using FedEdge.Data;
using FedEdge.Edge.Identity;
using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Protocol;
using FedEdge.Training;
using FedEdge.Training.Zoo;
using Google.Protobuf;

namespace FedEdge.Edge.Tests.Agent;

/// <summary>A cloud key, one device identity, a tiny model and a learnable synthetic data set.</summary>
public sealed class TestFederation : IDisposable
{
    public const string Name = "fed";
    public const int Features = 16;
    public const int Classes = 3;

    public TestFederation(string deviceId = "dev-1")
    {
        CloudKey = SigningKeyPair.Generate("cloud");
        DeviceKey = SigningKeyPair.Generate(deviceId);
        DeviceId = deviceId;
        Model = ModelZoo.Create("mlp", [Features], Classes, seed: 1);
    }

    public SigningKeyPair CloudKey { get; }
    public SigningKeyPair DeviceKey { get; }
    public string DeviceId { get; }
    public ModelProto Model { get; }

    public int ParameterCount => ModelLayout.Analyze(Model).ParameterCount;

    public VerificationKeyRing DeviceKeys => new(DeviceKey.VerificationKey);

    public EdgeDeviceIdentity Identity(Uri? broker = null, string password = "device-secret") =>
        new(DeviceId, Name, DeviceId, password, SigningKeyPair.FromPrivateKey(DeviceId, DeviceKey.ExportPrivateKey()), CloudKey.VerificationKey, broker?.ToString());

    /// <summary>The model with every weight shifted by <paramref name="shift"/> (a new version that only changes weights).</summary>
    public byte[] ModelBytes(float shift = 0)
    {
        var model = Model.Clone();
        foreach (var tensor in model.Graph.Initializer)
        {
            var values = tensor.ToFloatArray();
            for (var i = 0; i < values.Length; i++)
                values[i] += shift;
            tensor.SetFloats(values);
        }
        return model.ToByteArray();
    }

    public PublishedModel Publish(long version, byte[] modelBytes, SigningKeyPair? signer = null, params string[] codecHints) =>
        new ModelPublisher(signer ?? CloudKey).Publish(Name, version, modelBytes, new ModelPublishOptions
        {
            ChunkSize = 1024,
            ParameterCount = ParameterCount,
            CodecHints = codecHints,
        });

    /// <summary>Labels given by which third of the features has the largest sum: learnable by a linear model.</summary>
    public static Dataset Data(int count, int seed)
    {
        var random = new Random(seed);
        var x = new float[count * Features];
        var y = new long[count];
        for (var n = 0; n < count; n++)
        {
            var label = random.Next(Classes);
            y[n] = label;
            for (var f = 0; f < Features; f++)
                x[n * Features + f] = (float)(random.NextDouble() - 0.5) + (f % Classes == label ? 1f : 0f);
        }
        return new Dataset(x, y, [Features], Classes);
    }

    public void Dispose()
    {
        CloudKey.Dispose();
        DeviceKey.Dispose();
    }
}
