using FedEdge.Aggregation.Surrogates;
using FedEdge.Edge.Models;
using FedEdge.Storage;
using FedEdge.Training;
using Microsoft.Extensions.Logging;

namespace FedEdge.Edge.Training;

/// <summary>
/// The device side of FedMM (algorithms.md §5; arXiv 2507.17534, in the form of FedEM, Dieuleveut et al. 2021): the
/// statistic S_i = s̄(θ) of the broadcast θ over the device's own data, the message Δ_i = S_i − Ŝ − V_i against the
/// published Ŝ, and the control variate V_i, kept on disk like error-feedback memory (it must survive restarts: the
/// server's V counts it). V_i ← V_i + α·Q(Δ_i) is applied with the decoded message only once the message is queued.
/// </summary>
public sealed partial class FedMMDevice(string path, bool fsync, ILogger logger)
{
    private FedMMControlVariate? _variate;

    /// <summary>What a round computed: Δ_i (to encode), whether it is the bootstrap answer (no Ŝ yet: Δ_i = S_i, V_i untouched).</summary>
    public sealed record Message(float[] Difference, bool Bootstrap, double Loss);

    /// <summary>Whether this device is active in the version built from <paramref name="model"/> (the server asks the
    /// same devices: <see cref="FedMMParticipation"/> with the announced threshold).</summary>
    public static bool IsActive(VerifiedModel model, string deviceId)
    {
        var options = FedMMOptions.Parse(model.Algorithm);
        return FedMMParticipation.IsActive(options.Seed, model.Version + 1, deviceId, options.Participation);
    }

    /// <summary>Δ_i for <paramref name="model"/> at its parameters <paramref name="parameters"/>.</summary>
    public Message Compute(VerifiedModel model, OnnxDeviceObjective objective, ReadOnlySpan<float> parameters, double alpha)
    {
        var options = FedMMOptions.Parse(model.Algorithm);
        var surrogate = Surrogate(options, objective);
        var statistic = new float[surrogate.StatisticLength];
        surrogate.Statistic(parameters, objective, statistic);
        var estimate = model.Statistics();
        if (estimate.Length != 0 && estimate.Length != statistic.Length)
        {
            throw new InvalidDataException($"FedMM model v{model.Version} publishes {estimate.Length} statistics; the {surrogate.Name} surrogate has {statistic.Length}.");
        }

        var variate = Load(statistic.Length, alpha);
        var difference = new float[statistic.Length];
        variate.Difference(statistic, estimate, difference);
        return new Message(difference, estimate.Length == 0, objective.LastLoss);
    }

    /// <summary>V_i ← V_i + α·Q(Δ_i) with the message as the server decodes it, persisted (not for the bootstrap answer).</summary>
    public void Commit(ReadOnlySpan<float> decoded)
    {
        _variate!.Apply(decoded);
        AtomicFile.WriteAllBytes(path, _variate.ToBytes(), fsync);
    }

    /// <summary>The surrogate the federation names, over this device's model shape (built as the server builds it).</summary>
    public static ISurrogate Surrogate(FedMMOptions options, OnnxDeviceObjective objective) => options.Surrogate == SurrogateKind.Dictionary
        ? throw new NotSupportedException("fedmm: the dictionary surrogate is not computed by the edge agent (it runs in `fededge bench fedmm`).")
        : options.CreateSurrogate(objective.ParameterCount, objective.FeatureSize, objective.ClassCount);

    private FedMMControlVariate Load(int length, double alpha)
    {
        if (_variate is { } held && held.Values.Length == length && held.Alpha == alpha)
        {
            return held;
        }

        _variate = null;
        if (File.Exists(path))
        {
            try
            {
                var stored = FedMMControlVariate.FromBytes(File.ReadAllBytes(path), length);
                if (stored.Alpha == alpha)
                {
                    _variate = stored;
                }
                else
                {
                    LogDiscarded(path, $"α {stored.Alpha} ≠ {alpha}");
                }
            }
            catch (Exception e) when (e is InvalidDataException or ArgumentException)
            {
                LogDiscarded(path, e.Message);
            }
        }

        return _variate ??= new FedMMControlVariate(length, alpha);
    }

    [LoggerMessage(EventId = 420, Level = LogLevel.Warning, Message = "FedMM control variate {Path} not reused ({Why}); starting from zero")]
    private partial void LogDiscarded(string path, string why);
}
