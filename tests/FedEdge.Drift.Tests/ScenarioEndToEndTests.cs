using FedEdge.Data;
using FedEdge.Drift.Scenarios;

namespace FedEdge.Drift.Tests;

/// <summary>
/// A very small drift scenario end to end on real Fashion-MNIST (12 devices, logistic regression, 3 steps × 6 rounds;
/// real drift at step 2 on half of the devices): FedDAA must detect the injected real drift and beat FedAvg after it.
/// </summary>
public class ScenarioEndToEndTests
{
    [Fact]
    public void FedDaaDetectsRealDriftAndBeatsFedAvg()
    {
        if (!File.Exists(Path.Combine(FashionMnist.DefaultDirectory, "train-images-idx3-ubyte.gz")))
        {
            Assert.Fail($"Fashion-MNIST is missing under {FashionMnist.DefaultDirectory} (Debian package dataset-fashion-mnist, installed by scripts/install-deps.sh).");
        }

        var scenario = DriftScenario.Preset("feddaa-fmnist-real-tiny");
        var result = ScenarioRunner.Run(scenario, ScenarioData.LoadFashionMnist(scenario));

        Assert.Equal(scenario.TimeSteps, result.Steps.Count);
        var real = result.Steps[2].Detection.Single(d => d.Class == DriftClass.Real);
        Assert.True(real.TruePositives + real.FalseNegatives > 0, "the scenario injects real drift at step 2");
        Assert.True(real.Recall >= 0.75, $"real-drift recall at step 2 is {real.Recall:F2}");
        var after = result.Steps[2].Accuracy;
        Assert.True(after["FedDAA"] > after["FedAvg"], $"after the drift FedDAA {after["FedDAA"]:P1} vs FedAvg {after["FedAvg"]:P1}");
        Assert.True(result.Steps[^1].FedDaaClusters >= 2);
    }
}
