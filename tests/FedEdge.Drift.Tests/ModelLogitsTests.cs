using FedEdge.Training;
using FedEdge.Training.Zoo;

namespace FedEdge.Drift.Tests;

public class ModelLogitsTests
{
    [Fact]
    public void LogitsAgreeWithTheTrainersEvaluationForAnyParameterVector()
    {
        var model = ModelZoo.Create("mlp", [1, 6, 6], classes: 4, seed: 3);
        using var trainer = OnnxTrainer.Create(model, new TrainingOptions { BatchSize = 8, LearningRate = 0.5f, Threads = 1 });
        using var logits = new ModelLogits(model);
        var random = new Random(1);
        var x = new float[40 * 36];
        var y = new long[40];
        for (var i = 0; i < y.Length; i++)
        {
            y[i] = i % 4;
            for (var j = 0; j < 36; j++)
            {
                x[i * 36 + j] = (float)random.NextDouble() + (j % 4 == y[i] ? 1f : 0f);
            }
        }

        for (var step = 0; step < 5; step++)
        {
            trainer.TrainStep(x.AsSpan(0, 8 * 36), y.AsSpan(0, 8));
        }

        var parameters = new float[trainer.ParameterCount];
        trainer.CopyParametersTo(parameters);
        var output = new float[40 * 4];
        logits.Compute(parameters, x, output);
        var losses = new float[40];
        LogitMath.CrossEntropy(output, y, losses);
        var expected = trainer.Evaluate(x, y);
        Assert.Equal(expected.Loss, losses.Average(), 4);

        var correct = 0;
        for (var i = 0; i < 40; i++)
        {
            var row = output.AsSpan(i * 4, 4);
            correct += row.IndexOf(System.Numerics.Tensors.TensorPrimitives.Max(row)) == y[i] ? 1 : 0;
        }

        Assert.Equal(expected.Accuracy, correct / 40.0, 6);
        Assert.Throws<ArgumentException>(() => logits.Compute(new float[3], x, output));
    }
}
