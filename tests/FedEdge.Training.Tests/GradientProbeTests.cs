using FedEdge.Aggregation.Surrogates;
using FedEdge.Training.Zoo;

namespace FedEdge.Training.Tests;

/// <summary>The engine's probes without an optimizer step: ComputeGradient, EvaluateLoss and the L1 proximal step.</summary>
public sealed class GradientProbeTests
{
    [Fact]
    public void TheFullSetGradientIsTheStepThatPlainSgdTakesOnTheSameSet()
    {
        // 100 samples, batch 32: chunks of 32, 32, 32 and 4 weighted by their sizes must give the set's mean gradient,
        // which one SGD step of η = 1 on all 100 samples at once subtracts from w.
        var model = ModelZoo.Create("mlp", [1, 8, 8], classes: 3, seed: 4);
        var (x, y) = SyntheticData.Blobs(100, 64, 3, seed: 5);
        using var probe = OnnxTrainer.Create(model, new TrainingOptions { BatchSize = 32, Threads = 1 });
        var w = new float[probe.ParameterCount];
        probe.CopyParametersTo(w);
        var gradient = new float[w.Length];
        var loss = probe.ComputeGradient(x, y, gradient);
        var after = new float[w.Length];
        probe.CopyParametersTo(after);
        Assert.Equal(w, after); // no step was taken

        using var sgd = OnnxTrainer.Create(model, new TrainingOptions { BatchSize = 100, LearningRate = 1f, Threads = 1, BatchSplit = BatchSplitMode.Never });
        var stepLoss = sgd.TrainStep(x, y);
        var stepped = new float[w.Length];
        sgd.CopyParametersTo(stepped);
        Assert.Equal(stepLoss, loss, 4);
        for (var i = 0; i < w.Length; i++)
        {
            Assert.Equal(w[i] - stepped[i], gradient[i], 4);
        }

        Assert.True(gradient.Any(g => Math.Abs(g) > 1e-4f), "the gradient must not be zero");
    }

    [Fact]
    public void TheGradientAtAProbePointMatchesCentralDifferencesOfTheLoss()
    {
        var model = ModelZoo.Create("logreg", [1, 4, 4], classes: 3, seed: 6);
        var (x, y) = SyntheticData.Blobs(40, 16, 3, seed: 7);
        using var trainer = OnnxTrainer.Create(model, new TrainingOptions { BatchSize = 16, Threads = 1 });
        var random = new Random(8);
        var point = Enumerable.Range(0, trainer.ParameterCount).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var gradient = new float[point.Length];
        var loss = trainer.ComputeGradient(point, x, y, gradient);
        Assert.Equal(trainer.EvaluateLoss(point, x, y), loss, 4);
        const float h = 1e-2f;
        foreach (var i in new[] { 0, 5, 17, point.Length - 1 })
        {
            var plus = (float[])point.Clone();
            var minus = (float[])point.Clone();
            plus[i] += h;
            minus[i] -= h;
            var numeric = (trainer.EvaluateLoss(plus, x, y) - trainer.EvaluateLoss(minus, x, y)) / (2 * h);
            Assert.Equal(numeric, gradient[i], 3);
        }
    }

    [Fact]
    public void SoftThresholdingShrinksEveryTrainableWeightTowardsZero()
    {
        float[] v = [3f, -0.5f, -2f, 0.25f];
        SoftThreshold.Apply(v, 1f);
        Assert.Equal([2f, 0f, -1f, 0f], v);

        var model = ModelZoo.Create("logreg", [1, 4, 4], classes: 3, seed: 9);
        using var trainer = OnnxTrainer.Create(model, new TrainingOptions { Threads = 1 });
        var before = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(before);
        trainer.SoftThreshold(0.05f);
        var after = new float[before.Length];
        trainer.CopyParametersTo(after);
        for (var i = 0; i < before.Length; i++)
        {
            Assert.Equal(Math.Sign(before[i]) * Math.Max(Math.Abs(before[i]) - 0.05f, 0f), after[i], 6);
        }
    }
}
