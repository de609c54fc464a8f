using FedEdge.Aggregation.Attacks;
using FedEdge.Aggregation.Diagnostics;

namespace FedEdge.Aggregation.Tests;

public class AttackAndDiagnosticsTests
{
    [Theory]
    [InlineData(0.5, 0.0)]
    [InlineData(0.6, 0.2533471031357997)]
    [InlineData(0.975, 1.959963984540054)]
    [InlineData(0.001, -3.090232306167813)]
    [InlineData(1e-10, -6.361340902404056)]
    public void InverseNormalCdfMatchesTables(double p, double z) =>
        Assert.Equal(z, NormalDistribution.InverseCdf(p), 9);

    [Fact]
    public void NormalCdfMatchesTables()
    {
        Assert.Equal(0.8413447460685429, NormalDistribution.Cdf(1), 12);
        Assert.Equal(0.001349898031630095, NormalDistribution.Cdf(-3), 12);
        Assert.Equal(2.866515718791939e-7, NormalDistribution.Cdf(-5), 15);
    }

    [Fact]
    public void AlieZForTheStandardSetup()
    {
        // n = 25, f = 5: s = 8, z = Φ⁻¹(0.6) ≈ 0.25.
        Assert.Equal(0.2533, LittleIsEnoughAttack.DefaultZ(25, 5), 4);
    }

    [Fact]
    public void AlieSendsMeanMinusZSigma()
    {
        var honest = UpdateBatch.FromRows([[0, 10], [2, 10]]);
        var forged = new float[2];
        var attack = new LittleIsEnoughAttack(25, 5);
        attack.Forge(honest, default, forged);
        Assert.Equal(1 - attack.Z, forged[0], 6); // μ = 1, σ = 1
        Assert.Equal(10f, forged[1], 6);         // σ = 0
    }

    [Fact]
    public void IpmSignFlipAndLabelFlip()
    {
        var honest = UpdateBatch.FromRows([[1, 2], [3, 4]]);
        var forged = new float[2];
        new InnerProductManipulationAttack(0.1).Forge(honest, default, forged);
        Assert.Equal(-0.2f, forged[0], 6);
        Assert.Equal(-0.3f, forged[1], 6);
        new SignFlipAttack().Forge(honest, [1, -2], forged);
        Assert.Equal([-1f, 2f], forged);
        int[] labels = [0, 3, 9];
        LabelFlipAttack.FlipAll(labels);
        Assert.Equal([9, 6, 0], labels);
        Assert.Throws<ArgumentOutOfRangeException>(() => LabelFlipAttack.Flip(10));
    }

    [Fact]
    public void GaussianAttackHasVariance200()
    {
        var forged = new float[200_001];
        new GaussianAttack(200, seed: 1).Forge(UpdateBatch.FromRows([[0]]), default, forged);
        double mean = forged.Average(v => (double)v);
        double variance = forged.Average(v => (v - mean) * (v - mean));
        Assert.InRange(mean, -0.2, 0.2);
        Assert.InRange(variance, 196, 204);
    }

    [Fact]
    public void MonotonicityViolationsAreCounted()
    {
        var monitor = new MonotonicityMonitor(1);
        monitor.Observe([0], [0]);
        monitor.Observe([1], [1]);
        Assert.Equal(0, monitor.Violations);
        monitor.Observe([2], [0.5f]);
        Assert.Equal(1, monitor.Violations);
        Assert.Equal(0.5, monitor.ViolationFraction);
        Assert.Equal(-0.5, monitor.LastInnerProduct, 6);
        Assert.Equal(1.0, monitor.LastToAverageGap(), 6); // last 2, average 1

        // Updates are descent directions: F = −Δ flips the sign of the inner product.
        var updates = new MonotonicityMonitor(1);
        updates.ObserveUpdate([0], [0]);
        updates.ObserveUpdate([1], [1]);
        Assert.Equal(1, updates.Violations);
    }

    [Fact]
    public void DiameterOfTheLastWModels()
    {
        var monitor = new DispersionMonitor(2, window: 3);
        monitor.Observe([0, 0]);
        monitor.Observe([3, 4]);
        monitor.Observe([1, 0]);
        Assert.Equal(5.0, monitor.Diameter(), 6);
        monitor.Observe([1, 1]); // [0, 0] leaves the window
        Assert.Equal(Math.Sqrt(20), monitor.Diameter(), 6); // ‖[3, 4] − [1, 0]‖
        var devices = UpdateBatch.FromRows([[0, 0], [6, 8]]);
        Assert.Equal(5.0, DispersionMonitor.MeanDeviceDistance(devices, [3, 4]), 6);
    }
}
