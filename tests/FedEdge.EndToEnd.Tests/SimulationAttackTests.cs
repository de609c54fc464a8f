using FedEdge.Aggregation.Attacks;
using FedEdge.Cli.Simulation;

namespace FedEdge.EndToEnd.Tests;

/// <summary>The simulator's attack transforms and the collusion channel of ALIE / IPM, without a federation.</summary>
public sealed class SimulationAttackTests
{
    [Fact]
    public void IpmForgesFromTheReportedHonestUpdates()
    {
        var collusion = new SimulationCollusion(honestDevices: 2, TimeSpan.FromSeconds(5));
        new SimulationAttacks.Reporting(collusion).Apply(new float[] { 1, 2 }, globalVersion: 7);
        var second = new float[] { 3, 4 };
        new SimulationAttacks.Reporting(collusion).Apply(second, globalVersion: 7);
        Assert.Equal([3f, 4f], second); // honest devices send their update unchanged

        var forged = new float[] { 100, 100 };
        new SimulationAttacks.Forging(new InnerProductManipulationAttack(0.1), collusion, CancellationToken.None).Apply(forged, 7);
        Assert.Equal(-0.2f, forged[0], 1e-6f); // −ε·mean = −0.1·[2, 3]
        Assert.Equal(-0.3f, forged[1], 1e-6f);
        Assert.Equal(0, collusion.ShortWaits);
    }

    [Fact]
    public async Task AnAttackerWaitsForTheHonestReportsOfItsVersion()
    {
        var collusion = new SimulationCollusion(honestDevices: 2, TimeSpan.FromSeconds(20));
        collusion.Report(3, [0, 0]);
        collusion.Report(2, [50, 50]); // another version: not part of round 3
        var forged = new float[] { 9, 9 };
        var attacker = Task.Run(() => new SimulationAttacks.Forging(new LittleIsEnoughAttack(5, 1), collusion, CancellationToken.None).Apply(forged, 3));
        // The attacker has version 2's report and one of version 3's, and waits for the second.
        await Eventually.HoldsAsync(() => collusion.Waiting == 1, "the attacker waiting for round 3's honest reports");
        Assert.False(attacker.IsCompleted);
        collusion.Report(3, [2, 4]);
        await attacker.WaitAsync(TimeSpan.FromSeconds(10));
        // Honest [0, 0] and [2, 4]: μ = [1, 2], σ = [1, 2]; forged = μ − z·σ.
        var z = LittleIsEnoughAttack.DefaultZ(5, 1);
        Assert.Equal((float)(1 - z * 1), forged[0], 1e-5f);
        Assert.Equal((float)(2 - z * 2), forged[1], 1e-5f);
        Assert.Equal(0, collusion.ShortWaits);
    }

    [Fact]
    public void AnAttackerForgesFromWhatArrivedWhenTheWaitEnds()
    {
        var collusion = new SimulationCollusion(honestDevices: 3, TimeSpan.FromMilliseconds(100));
        collusion.Report(1, [4, -2]);
        var forged = new float[2];
        new SimulationAttacks.Forging(new InnerProductManipulationAttack(0.5), collusion, CancellationToken.None).Apply(forged, 1);
        Assert.Equal([-2f, 1f], forged);
        Assert.Equal(1, collusion.ShortWaits);
    }

    [Fact]
    public void WithoutHonestReportsTheAttackerForgesFromItsOwnUpdate()
    {
        var collusion = new SimulationCollusion(honestDevices: 1, TimeSpan.FromMilliseconds(50));
        var forged = new float[] { 2, -4 };
        new SimulationAttacks.Forging(new InnerProductManipulationAttack(0.5), collusion, CancellationToken.None).Apply(forged, 5);
        Assert.Equal([-1f, 2f], forged);
    }

    [Theory]
    [InlineData("sign-flip", typeof(SignFlipAttack))]
    [InlineData("gaussian", typeof(GaussianAttack))]
    [InlineData("ipm", typeof(InnerProductManipulationAttack))]
    [InlineData("alie", typeof(LittleIsEnoughAttack))]
    public void AttacksAreTheAggregationLibrarys(string name, Type type)
    {
        Assert.IsType(type, SimulationAttacks.CreateAttack(name, 20, 4, 0));
        Assert.Equal(name is "ipm" or "alie", SimulationAttacks.IsOmniscient(name));
    }

    [Fact]
    public void DataAttacksAndNoneForgeNothingAndUnknownAttacksAreRejected()
    {
        Assert.Null(SimulationAttacks.CreateAttack("label-flip", 20, 4, 0));
        Assert.Null(SimulationAttacks.CreateAttack("none", 20, 4, 0));
        Assert.Throws<ArgumentException>(() => SimulationAttacks.CreateAttack("sybil", 20, 4, 0));
        Assert.Throws<ArgumentException>(() => new SimulationOptions { Attack = "sybil" }.Validate());
        Assert.Throws<ArgumentException>(() => new SimulationOptions { Broker = "http://x" }.Validate());
        Assert.Throws<ArgumentException>(() => new SimulationOptions { Aggregator = "average" }.Validate());
    }

    [Fact]
    public void TheRuleToleratesTheAttackerShareAlsoInACleanRun()
    {
        // A clean run is the baseline of the attacked runs, so it configures the rule with the same f (docs/learning.md §3).
        Assert.Equal(4, new SimulationOptions { Devices = 20, Attack = "sign-flip", Attackers = 0.2 }.ByzantineCount);
        Assert.Equal(4, new SimulationOptions { Devices = 20, Attack = "none", Attackers = 0.2 }.ByzantineCount);
        Assert.Equal(0, new SimulationOptions { Devices = 20, Attack = "none", Attackers = 0.2 }.AttackerCount);
        // At most (n − 1)/2, so a tiny clean run keeps an honest majority; an explicit f wins.
        Assert.Equal(1, new SimulationOptions { Devices = 3, Attack = "none", Attackers = 0.9 }.ByzantineCount);
        Assert.Equal(2, new SimulationOptions { Devices = 20, Attack = "alie", AssumedByzantine = 2 }.ByzantineCount);
        Assert.Throws<ArgumentException>(() => new SimulationOptions { Devices = 20, AssumedByzantine = 10 }.Validate());
        new SimulationOptions { Aggregator = "nnm+trimmed-mean" }.Validate(); // the mixing rules are known names
    }
}
