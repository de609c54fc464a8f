using FedEdge.Data;
using FedEdge.Onnx;
using FedEdge.Onnx.Proto;
using FedEdge.Training;
using FedEdge.Training.Zoo;

namespace FedEdge.Drift.Scenarios;

/// <summary>
/// One <see cref="OnnxTrainer"/> and one <see cref="ModelLogits"/> shared by every method and device of a run: a
/// model is just a flat parameter vector, loaded into the trainer for local training and fed to the logits session for
/// inference. Batches are always full (the last one wraps around the shuffled epoch), so one step graph serves all.
/// </summary>
internal sealed class ModelEngine : IDisposable
{
    private readonly string _model;
    private readonly int[] _sampleShape;
    private readonly OnnxTrainer _trainer;
    private readonly ModelLogits _logits;
    private readonly int _batch;
    private readonly float[] _x;
    private readonly long[] _y;

    public ModelEngine(DriftScenario scenario, int[] sampleShape)
    {
        _model = scenario.Model;
        _sampleShape = sampleShape;
        var model = ModelZoo.Create(_model, sampleShape, DriftScenario.ClassCount, scenario.Seed);
        _batch = scenario.BatchSize;
        _trainer = OnnxTrainer.Create(model, new TrainingOptions
        {
            BatchSize = _batch,
            LearningRate = scenario.LearningRate,
            Optimizer = OptimizerKind.Sgd,
            Threads = scenario.Threads,
            Seed = scenario.Seed,
        });
        _logits = new ModelLogits(model, scenario.Threads);
        _x = new float[_batch * _logits.SampleSize];
        _y = new long[_batch];
    }

    public int ParameterCount => _trainer.ParameterCount;

    public int ClassCount => _logits.ClassCount;

    /// <summary>Fewest samples worth a local update (a quarter batch).</summary>
    public int MinSamples => Math.Max(4, _batch / 4);

    /// <summary>Fresh parameters of the zoo model drawn with <paramref name="seed"/> (PyTorch default initialisation).</summary>
    public float[] Initial(int seed)
    {
        var model = ModelZoo.Create(_model, _sampleShape, DriftScenario.ClassCount, seed);
        var layout = ModelLayout.Analyze(model);
        var byName = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var parameters = new float[layout.ParameterCount];
        foreach (var t in layout.Tensors)
        {
            byName[t.Name].CopyFloatsTo(parameters.AsSpan(t.Offset, t.Length));
        }

        return parameters;
    }

    /// <summary>Local SGD from <paramref name="parameters"/> (updated in place) over the samples at <paramref name="indices"/>; returns the mean loss.</summary>
    public double Train(float[] parameters, Dataset data, int[] indices, int epochs, Random random)
    {
        if (indices.Length < MinSamples)
        {
            return double.NaN;
        }

        _trainer.SetParameters(parameters);
        var order = (int[])indices.Clone();
        var steps = (order.Length + _batch - 1) / _batch;
        double lossSum = 0;
        var lossCount = 0;
        var batch = new int[_batch];
        for (var epoch = 0; epoch < epochs; epoch++)
        {
            random.Shuffle(order);
            for (var s = 0; s < steps; s++)
            {
                for (var b = 0; b < _batch; b++)
                {
                    batch[b] = order[(s * _batch + b) % order.Length];
                }

                data.CopyBatch(batch, _x, _y);
                var loss = _trainer.TrainStep(_x, _y);
                if (float.IsFinite(loss))
                {
                    lossSum += loss;
                    lossCount++;
                }
            }
        }

        _trainer.CopyParametersTo(parameters);
        return lossCount == 0 ? double.NaN : lossSum / lossCount;
    }

    /// <summary>Logits (n × classes) of <paramref name="parameters"/> on all of <paramref name="data"/>.</summary>
    public float[] Logits(float[] parameters, Dataset data)
    {
        var logits = new float[data.Count * ClassCount];
        _logits.Compute(parameters, data.Features, logits);
        return logits;
    }

    /// <summary>Per-sample cross-entropy of <paramref name="parameters"/> on <paramref name="data"/>.</summary>
    public float[] Losses(float[] parameters, Dataset data)
    {
        var losses = new float[data.Count];
        LogitMath.CrossEntropy(Logits(parameters, data), data.Labels, losses);
        return losses;
    }

    public static double Accuracy(ReadOnlySpan<float> scores, ReadOnlySpan<long> labels, int classes)
    {
        var correct = 0;
        for (var i = 0; i < labels.Length; i++)
        {
            var row = scores.Slice(i * classes, classes);
            var best = 0;
            for (var c = 1; c < classes; c++)
            {
                if (row[c] > row[best])
                {
                    best = c;
                }
            }

            correct += best == labels[i] ? 1 : 0;
        }

        return labels.Length == 0 ? 0 : (double)correct / labels.Length;
    }

    public void Dispose()
    {
        _trainer.Dispose();
        _logits.Dispose();
    }
}
