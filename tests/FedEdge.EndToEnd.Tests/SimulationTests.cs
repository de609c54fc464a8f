using System.Text.Json;
using FedEdge.Cli.Simulation;

namespace FedEdge.EndToEnd.Tests;

/// <summary>`fededge sim` end to end: cloud + embedded broker + in-process agents over loopback MQTT on Fashion-MNIST.</summary>
public sealed class SimulationTests
{
    private static readonly bool HaveFashionMnist = Directory.Exists(FedEdge.Data.FashionMnist.DefaultDirectory);

    [Fact]
    public async Task TinySimulationLearnsAndRecordsEveryRound()
    {
        Assert.True(HaveFashionMnist, $"Fashion-MNIST is missing at {FedEdge.Data.FashionMnist.DefaultDirectory} (Debian package dataset-fashion-mnist).");
        var options = new SimulationOptions
        {
            Devices = 3, Rounds = 2, Model = "logreg", Partition = "iid", Codec = "sign", ErrorFeedback = "ef14", Aggregator = "mean",
            Attack = "none", MaxStepsPerRound = 100, EvaluationSamples = 2000, Seed = 1, RoundTimeout = TimeSpan.FromMinutes(1),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var seen = new List<SimulationRound>();
        var result = await SimulationRunner.RunAsync(options, seen.Add, cancellationToken: timeout.Token);

        Assert.Equal(2, result.Rounds.Count);
        Assert.Equal(seen, result.Rounds);
        Assert.Equal([1L, 2L], result.Rounds.Select(r => r.Round));
        Assert.All(result.Rounds, r => Assert.Equal(3, r.Participants));
        // Sign codec: about d/8 bytes per update (d = 7,850 for logreg), far below fp32's 4d.
        Assert.All(result.Rounds, r => Assert.InRange(r.BytesUp, 3 * 7850 / 8, 3 * 7850 / 4));
        Assert.True(result.Rounds[^1].TestAccuracy > 0.3, $"accuracy {result.Rounds[^1].TestAccuracy:P1} is not above chance");
        Assert.True(result.Rounds[^1].TestAccuracy > result.InitialAccuracy);

        using var json = JsonDocument.Parse(SimulationReport.ToJson(result));
        Assert.Equal(2, json.RootElement.GetProperty("rounds").GetArrayLength());
        Assert.Equal(3, json.RootElement.GetProperty("options").GetProperty("devices").GetInt32());
        Assert.Contains("<svg", SimulationReport.ToHtml(result));
    }

    [Fact]
    public async Task SignFlipAttackersAreChosenAndTheRunCompletes()
    {
        Assert.True(HaveFashionMnist);
        var options = new SimulationOptions
        {
            Devices = 4, Rounds = 1, Model = "logreg", Partition = "iid", Codec = "fp16", ErrorFeedback = "none", Aggregator = "median",
            Attack = "sign-flip", Attackers = 0.25, MaxStepsPerRound = 50, EvaluationSamples = 1000, Seed = 2, RoundTimeout = TimeSpan.FromMinutes(1),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var result = await SimulationRunner.RunAsync(options, cancellationToken: timeout.Token);
        Assert.Single(result.Attackers);
        Assert.Single(result.Rounds);
        Assert.Equal(4, result.Rounds[0].Participants);
        Assert.True(result.Rounds[0].TestAccuracy > 0.3);
    }
}
