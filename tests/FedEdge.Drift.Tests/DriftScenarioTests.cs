using FedEdge.Drift.Scenarios;

namespace FedEdge.Drift.Tests;

public class DriftScenarioTests
{
    [Fact]
    public void PaperPresetMatchesFedDaaSetup()
    {
        var s = DriftScenario.Preset("feddaa-fmnist");
        Assert.Equal((60, 6, 40, 0.5, 0.06f, 128, 1), (s.Devices, s.TimeSteps, s.RoundsPerStep, s.SampleRate, s.LearningRate, s.BatchSize, s.LocalEpochs));
        Assert.Equal([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3], new[] { 0, 7, 14, 14, 14, 15, 29, 30, 44, 45, 50, 59 }.Select(s.BlockOf).ToArray()[..12]);
        Assert.Equal([9L, 8, 7, 6, 5, 4, 3, 2, 1, 0], DriftScenario.LabelMapOf(1));
        Assert.Equal([2L, 3, 4, 5, 6, 7, 8, 9, 0, 1], DriftScenario.LabelMapOf(3));
    }

    [Fact]
    public void GroundTruthFollowsTheSchedule()
    {
        var s = DriftScenario.Preset("feddaa-fmnist");
        // Slots: device mod 4 = 0 real, 1 virtual, 2 label, 3 stable.
        Assert.Equal(DriftClass.None, s.TruthAt(0, 1));
        Assert.Equal(DriftClass.Real, s.TruthAt(0, 2));
        Assert.Equal(new DeviceConcept(1, 0, -1), s.ConceptAt(0, 2)); // block 0: map 0 → 1 at step 2
        Assert.Equal(DriftClass.Virtual, s.TruthAt(1, 1));
        Assert.Equal(240, s.ConceptAt(1, 2).RotationDegrees);
        Assert.Equal(0, s.ConceptAt(1, 3).RotationDegrees);
        Assert.Equal(DriftClass.Label, s.TruthAt(2, 5));
        Assert.All(Enumerable.Range(1, 5), t => Assert.Equal(DriftClass.None, s.TruthAt(3, t)));

        var real = DriftScenario.Preset("feddaa-fmnist-real-small");
        Assert.Equal(DriftClass.Real, real.KindOf(0));
        Assert.Equal(DriftClass.None, real.KindOf(1));
        Assert.Throws<ArgumentException>(() => DriftScenario.Preset("feddaa-cifar"));
    }
}
