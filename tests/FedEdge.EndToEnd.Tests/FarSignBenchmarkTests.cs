using FedEdge.Aggregation.SignedDirections;
using FedEdge.Cli.Simulation;
using FedEdge.Data;

namespace FedEdge.EndToEnd.Tests;

/// <summary>
/// `fededge bench far-sign` on real Fashion-MNIST (Debian's dataset-fashion-mnist; scripts/install-deps.sh installs it):
/// FAR-SIGN's answers from OnnxTrainer gradients train logistic regression through <see cref="FarSignStrategy"/>, the
/// FedBuff baseline runs on the same fleet, and a run's figures depend only on the seed (simulated time), not on the
/// machine's load.
/// </summary>
public sealed class FarSignBenchmarkTests
{
    private static readonly Lazy<(Dataset Train, Dataset Test)> Data = new(() =>
        (FashionMnist.LoadTrain(storage: FeatureStorage.Byte), FashionMnist.LoadTest(storage: FeatureStorage.Byte).Take(1000)));

    private static FarSignBenchmarkOptions Options(string method, string attack = "none") => new()
    {
        Method = method,
        Attack = attack,
        Budget = 1.5,
        Checkpoints = 3,
        FarSign = new FarSignOptions { Directions = 256 },
    };

    private static BenchmarkRun Run(FarSignBenchmarkOptions options)
    {
        using var bench = new FarSignBenchmark(options, Data.Value.Train, Data.Value.Test);
        return bench.Run();
    }

    [Fact]
    public void Far_sign_answers_train_logistic_regression_and_runs_are_reproducible()
    {
        var run = Run(Options("far-sign"));
        Assert.Equal(4, run.Points.Count); // t = 0, 0.5, 1, 1.5
        Assert.InRange(run.Points[0].Accuracy, 0, 0.3);
        Assert.True(run.FinalAccuracy > 0.65, $"FAR-SIGN reached {run.FinalAccuracy:P1} after {run.Messages} messages");
        Assert.Equal(0, run.Refused);
        Assert.Equal(run.Messages, run.Versions); // every message is a version
        Assert.Equal(run.Messages * (SignAnswerPacket.Length(256)), run.BytesUp);

        // Simulated time: the same seed gives the same figures, however loaded the machine is.
        var again = Run(Options("far-sign"));
        Assert.Equal(run.Points, again.Points);
    }

    [Fact]
    public void Sign_flipping_attackers_slow_far_sign_but_do_not_stop_it()
    {
        var attacked = Run(Options("far-sign", "sign-flip"));
        Assert.Equal(4, attacked.Attackers); // 20 % of 20 devices
        Assert.True(attacked.FinalAccuracy > 0.6, $"FAR-SIGN under sign flips reached {attacked.FinalAccuracy:P1}");
    }

    [Fact]
    public void Robust_fedbuff_runs_on_the_same_fleet()
    {
        var run = Run(Options("fedbuff", "colluding"));
        Assert.Equal(4L * run.Parameters * run.Messages, run.BytesUp);
        Assert.Equal(run.Messages / 10, run.Versions); // K = 10 updates per version
        Assert.True(run.FinalAccuracy > 0.6, $"FedBuff (trimmed mean) under ALIE reached {run.FinalAccuracy:P1}");
    }
}
