using FedEdge.Onnx;
using FedEdge.Training.Zoo;

namespace FedEdge.Training.Tests;

public class TrainerTests
{
    [Theory]
    [InlineData("mlp", OptimizerKind.Sgd)]
    [InlineData("cnn", OptimizerKind.Momentum)]
    [InlineData("logreg", OptimizerKind.Adam)]
    public void TrainingReducesLossOnSyntheticData(string zoo, OptimizerKind optimizer)
    {
        var model = ModelZoo.Create(zoo, [1, 16, 16], classes: 4, seed: 1);
        var (x, y) = SyntheticData.Blobs(256, 256, 4, seed: 2);
        using var trainer = OnnxTrainer.Create(model, new TrainingOptions
        {
            BatchSize = 32,
            LearningRate = optimizer == OptimizerKind.Adam ? 0.01f : 0.05f,
            Optimizer = optimizer,
            Threads = 1,
        });
        var before = trainer.Evaluate(x, y);
        for (var epoch = 0; epoch < 12; epoch++)
        {
            for (var s = 0; s < 8; s++)
            {
                var loss = trainer.TrainStep(x.AsSpan(s * 32 * 256, 32 * 256), y.AsSpan(s * 32, 32));
                Assert.True(float.IsFinite(loss));
            }
        }

        var after = trainer.Evaluate(x, y);
        Assert.True(after.Loss < 0.7 * before.Loss, $"loss {before.Loss} -> {after.Loss}");
        Assert.True(after.Accuracy > 0.9, $"accuracy {after.Accuracy}");
    }
}
