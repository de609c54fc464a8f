using FedEdge.Aggregation.Surrogates;
using FedEdge.Training.Zoo;

namespace FedEdge.Training.Tests;

/// <summary>FedMM's logistic surrogate on the real zoo logreg: the diagonal curvature majorizes the loss the trainer
/// computes, over the model's own parameter layout and input standardisation.</summary>
public class FedMMSurrogateTests
{
    private const int Features = 6;
    private const int Classes = 3;
    private const float Mean = 0.5f;
    private const float Std = 2f;

    private static (OnnxTrainer Trainer, OnnxDeviceObjective Objective, LogisticCurvatureSurrogate Surrogate) Setup()
    {
        var trainer = OnnxTrainer.Create(ModelZoo.Create("logreg", [Features], Classes, seed: 1, inputMean: Mean, inputStd: Std),
            new TrainingOptions { BatchSize = 16 });
        var (x, y) = SyntheticData.Blobs(60, Features, Classes, seed: 2);
        return (trainer, new OnnxDeviceObjective(trainer, x, y), new LogisticCurvatureSurrogate(Features, Classes, 0, Mean, Std));
    }

    [Fact]
    public void TheSurrogateReadsTheZooLogregLayout()
    {
        var (trainer, _, surrogate) = Setup();
        using (trainer)
        {
            Assert.Equal(surrogate.ParameterCount, trainer.ParameterCount);
            Assert.Equal(["fc1.weight", "fc1.bias"], trainer.Parameters.Select(t => t.Name));
            Assert.Equal([Classes, Features], trainer.Parameters[0].Dims);
            Assert.Equal(Classes * Features, trainer.Parameters[1].Offset);
        }
    }

    [Fact]
    public void TheStatisticIsCurvatureTimesThetaMinusTheTrainersGradient()
    {
        var (trainer, objective, surrogate) = Setup();
        using (trainer)
        {
            var theta = new float[trainer.ParameterCount];
            trainer.CopyParametersTo(theta);
            var s = new float[surrogate.StatisticLength];
            surrogate.Statistic(theta, objective, s);
            var gradient = new float[theta.Length];
            trainer.ComputeGradient(theta, objective.Features, LabelsOf(objective), gradient);
            var h = new float[Features + 1];
            LogisticCurvatureSurrogate.Curvature(objective.Features, Features, Mean, Std, h);
            Assert.Equal(h, s[..(Features + 1)]);
            for (int j = 0; j < theta.Length; j++)
            {
                Assert.Equal(h[surrogate.CurvatureIndex(j)] * theta[j] - gradient[j], s[Features + 1 + j], 5);
            }
        }
    }

    [Fact]
    public void TheDiagonalCurvatureMajorizesTheLossAtRandomPoints()
    {
        var (trainer, objective, surrogate) = Setup();
        using (trainer)
        {
            var labels = LabelsOf(objective);
            var random = new Random(5);
            var s = new float[surrogate.StatisticLength];
            var gradient = new float[trainer.ParameterCount];
            double tightest = 0;
            for (int trial = 0; trial < 30; trial++)
            {
                var theta = Random(random, trainer.ParameterCount, trial % 3 == 0 ? 0.01 : 1.0);
                var other = Random(random, trainer.ParameterCount, trial % 2 == 0 ? 0.1 : 2.0);
                for (int j = 0; j < other.Length; j++)
                {
                    other[j] += theta[j];
                }

                double f = trainer.ComputeGradient(theta, objective.Features, labels, gradient);
                surrogate.Statistic(theta, objective, s);
                double linear = 0, quadratic = 0;
                for (int j = 0; j < theta.Length; j++)
                {
                    double step = other[j] - theta[j];
                    linear += gradient[j] * step;
                    quadratic += 0.5 * s[surrogate.CurvatureIndex(j)] * step * step;
                }

                double fOther = trainer.EvaluateLoss(other, objective.Features, labels);
                Assert.True(fOther <= f + linear + quadratic + 1e-5, $"trial {trial}: f(θ') = {fOther} > bound {f + linear + quadratic}");
                tightest = Math.Max(tightest, (fOther - f - linear) / quadratic);
            }

            // The check has teeth: at some point the remainder f(θ') − f(θ) − ⟨∇f, θ' − θ⟩ uses a sizeable share of the
            // bound, so a curvature a few times smaller would not majorize there.
            Assert.True(tightest > 0.1, $"the remainder used at most {tightest:P1} of the bound");
        }
    }

    private static long[] LabelsOf(OnnxDeviceObjective objective)
    {
        // The objective keeps its labels private; rebuild them as Setup drew them.
        var (_, y) = SyntheticData.Blobs(60, Features, Classes, seed: 2);
        Assert.Equal(objective.SampleCount, y.Length);
        return y;
    }

    private static float[] Random(Random random, int length, double scale) =>
        Enumerable.Range(0, length).Select(_ => (float)(scale * SyntheticData.Gaussian(random))).ToArray();
}
