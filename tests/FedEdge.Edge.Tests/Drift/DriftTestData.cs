using FedEdge.Data;
using FedEdge.Drift;
using FedEdge.Edge.Models;
using FedEdge.Edge.Tests.Agent;
using FedEdge.Edge.Training;
using FedEdge.Onnx;
using FedEdge.Protocol.Messages;
using FedEdge.Training;
using Google.Protobuf;

namespace FedEdge.Edge.Tests.Drift;

/// <summary>Windows with constructed real / virtual / label shifts of <see cref="TestFederation.Data"/>, and models trained on them.</summary>
internal static class DriftTestData
{
    public const int Classes = TestFederation.Classes;

    /// <summary>Real drift: the same inputs, labels remapped y → (y + 1) mod C.</summary>
    public static Dataset Relabelled(Dataset data) =>
        data.WithLabels([.. data.Labels.Select(y => (y + 1) % Classes)]);

    /// <summary>Virtual drift: every feature moved by <paramref name="offset"/> (a sensor offset), labels unchanged.</summary>
    public static Dataset Shifted(Dataset data, float offset)
    {
        var x = (float[])data.Features.Clone();
        for (var i = 0; i < x.Length; i++)
            x[i] += offset;
        return new Dataset(x, (long[])data.Labels.Clone(), data.SampleShape, data.ClassCount);
    }

    /// <summary>Label drift: keep only labels in <paramref name="labels"/> (plus every <paramref name="keepEvery"/>-th other sample).</summary>
    public static Dataset LabelMix(Dataset data, long[] labels, int keepEvery = 10)
    {
        var indices = Enumerable.Range(0, data.Count).Where(i => labels.Contains(data.Labels[i]) || i % keepEvery == 0).ToArray();
        return data.Subset(indices);
    }

    /// <summary>A verified model as the receiver would hand it on (the signature is not re-checked past the receiver).</summary>
    public static VerifiedModel Verified(byte[] modelBytes, long version, int cluster = 0) =>
        new(new ModelAnnouncement { Federation = TestFederation.Name, ModelVersion = version, Cluster = cluster }, [], modelBytes);

    /// <summary>The test model trained for a few epochs on <paramref name="data"/>: a reference whose logits carry the concept.</summary>
    public static byte[] Trained(byte[] modelBytes, Dataset data, int epochs = 5)
    {
        using var trainer = new LocalTrainer(new EdgeTrainingOptions { LocalEpochs = epochs, BatchSize = 16, LearningRate = 0.2f, Threads = 1, Seed = 1 }, data);
        var result = trainer.Train(Verified(modelBytes, 1), CancellationToken.None);
        var proto = OnnxModelFile.Parse(modelBytes);
        var layout = ModelLayout.Analyze(proto);
        var parameters = new float[layout.ParameterCount];
        layout.ReadParameters(proto, parameters);
        for (var i = 0; i < parameters.Length; i++)
            parameters[i] += result.Delta[i];
        layout.WriteParameters(proto, parameters);
        return proto.ToByteArray();
    }

    /// <summary>The FedDAA prototype of <paramref name="data"/> under <paramref name="modelBytes"/>, computed independently of the agent.</summary>
    public static float[] PrototypeOf(byte[] modelBytes, Dataset data)
    {
        var proto = OnnxModelFile.Parse(modelBytes);
        using var logits = new ModelLogits(proto);
        var parameters = new float[logits.ParameterCount];
        ModelLayout.Analyze(proto).ReadParameters(proto, parameters);
        var z = new float[data.Count * logits.ClassCount];
        logits.Compute(parameters, data.Features, z);
        return Prototype.FromLogits(z, data.Labels, Classes, logits.ClassCount).Values;
    }

    /// <summary>A cluster assignment (unsigned; tests of the monitor take it as already verified).</summary>
    public static ClusterAssignment Assignment(long epoch, (int Cluster, float Prior)[] clusters, (int Cluster, float[] Centre)[] centres, float[][]? labelDistributions = null)
    {
        var assignment = new ClusterAssignment
        {
            Federation = TestFederation.Name,
            DeviceId = "dev-1",
            Epoch = epoch,
            LabelCount = Classes,
            OutputDimension = Classes,
        };
        for (var j = 0; j < clusters.Length; j++)
        {
            var assigned = new AssignedCluster { Cluster = clusters[j].Cluster, Prior = clusters[j].Prior };
            if (labelDistributions is not null)
                assigned.LabelDistribution.AddRange(labelDistributions[j]);
            assignment.Clusters.Add(assigned);
        }
        foreach (var (cluster, centre) in centres)
        {
            assignment.CentreClusters.Add(cluster);
            assignment.Centres.AddRange(centre);
        }
        return assignment;
    }
}
