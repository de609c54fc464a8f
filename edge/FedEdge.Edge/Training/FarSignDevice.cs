using FedEdge.Aggregation.SignedDirections;
using FedEdge.Edge.Models;
using FedEdge.Training;

namespace FedEdge.Edge.Training;

/// <summary>
/// The device side of FAR-SIGN (algorithms.md §4, arXiv 2605.09337; FedEdge's [design] realisation): for the model it
/// holds (x̃, possibly stale), one mini-batch of its data, and K directions u_k regenerated from the version's work seed
/// and its device id, it answers each with one bit: sign⟨∇f_i(x̃), u_k⟩ from one backward pass (first order) or
/// sign(f_i(x̃ + c·u_k) − f_i(x̃ − c·u_k)) from two forward passes (zeroth order, any ONNX model).
/// The answers travel as ±1 values through the scaled-sign codec (scale 1: one bit each).
/// </summary>
public sealed class FarSignDevice(string deviceId)
{
    private SignAnswerer? _answerer;
    private float[] _gradient = [];

    /// <summary>The K answers (±1) for <paramref name="model"/> at <paramref name="parameters"/>, and the batch's loss.</summary>
    public (float[] Answers, double Loss) Answer(VerifiedModel model, OnnxDeviceObjective objective, ReadOnlySpan<float> parameters, int seed)
    {
        var options = FarSignOptions.FromParameters(model.Algorithm.Parameters);
        if (model.Announcement.WorkSeed == 0)
        {
            throw new InvalidDataException($"FAR-SIGN model v{model.Version} carries no work seed.");
        }

        var dimension = parameters.Length;
        if (_answerer?.Dimension != dimension)
        {
            _answerer = new SignAnswerer(dimension);
            _gradient = new float[dimension];
        }

        // A fresh batch per version and device, reproducible for a given device seed.
        objective.DrawBatch(new Random(HashCode.Combine(seed, model.Version)), options.Batch);
        var packet = new byte[SignAnswerPacket.Length(options.Directions)];
        double loss;
        if (options.Order == DerivativeOrder.First)
        {
            loss = objective.BatchGradient(parameters, _gradient);
            _answerer.AnswerFirstOrder(model.Announcement.WorkSeed, deviceId, _gradient, options.Directions, packet);
        }
        else
        {
            loss = objective.BatchLoss(parameters);
            _answerer.AnswerZerothOrder(model.Announcement.WorkSeed, deviceId, parameters, (float)options.Smoothing, p => objective.BatchLoss(p), options.Directions, packet);
        }

        var answers = new float[options.Directions];
        for (var k = 0; k < answers.Length; k++)
        {
            answers[k] = SignAnswerPacket.Sign(packet, k);
        }

        return (answers, loss);
    }
}
