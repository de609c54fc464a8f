using System.Numerics.Tensors;
using FedEdge.Training.Autodiff;
using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Training.Engine;

/// <summary>
/// Zeroth-order training: the two-point gradient estimate along Gaussian directions u_k,
/// ĝ = (1/K)·Σ_k [f(w + c·u_k) − f(w − c·u_k)] / (2c) · u_k
/// (Nesterov &amp; Spokoiny, "Random Gradient-Free Minimization of Convex Functions", 2017, eq. 2.3 form),
/// using forward passes only, then the same optimizer graph as gradient mode. Directions come from
/// <c>Random(seed + step)</c>, so a run is reproducible and a direction can be regenerated from 8 bytes.
/// </summary>
internal sealed class ZerothOrderEstimator : IDisposable
{
    private readonly OnnxTrainer _trainer;
    private readonly InferenceSession _session;
    private readonly OrtIoBinding[] _bindings = new OrtIoBinding[OnnxTrainer.SideCount];
    private readonly float[] _gradient;
    private readonly float[] _direction;
    private readonly float[] _probe;
    private readonly OrtValue[] _gradientValues;
    private readonly OrtValue[] _probeValues;
    private readonly bool[] _trainable;
    private readonly RunOptions _runOptions = new();
    private readonly List<OrtValue> _views = [];

    public ZerothOrderEstimator(OnnxTrainer trainer)
    {
        _trainer = trainer;
        var graph = TrainingGraphBuilder.BuildOptimizerOnly(trainer.Model, trainer.Options);
        _session = ValueShapes.CreateSession(graph.Model, trainer.SessionOptions);
        var count = trainer.ParameterCount;
        _gradient = new float[count];
        _direction = new float[count];
        _probe = new float[count];
        var tensors = trainer.Layout.Tensors;
        _gradientValues = [.. tensors.Select(t => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_gradient, t.Offset, t.Length), t.Dims))];
        _probeValues = [.. tensors.Select(t => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, new Memory<float>(_probe, t.Offset, t.Length), t.Dims))];
        _trainable = [.. tensors.Select(t => t.Trainable)];
        for (var side = 0; side < OnnxTrainer.SideCount; side++)
        {
            var binding = _session.CreateIoBinding();
            trainer.BindCommon(binding, graph, side, _views);
            for (var i = 0; i < tensors.Count; i++)
            {
                if (graph.GradientInputs[i] is { } g)
                {
                    binding.BindInput(g, _gradientValues[i]);
                }
            }

            _bindings[side] = binding;
        }
    }

    public float Step(ReadOnlySpan<float> features, ReadOnlySpan<long> labels)
    {
        var options = _trainer.Options;
        var c = options.ZerothOrderSmoothing;
        var k = options.ZerothOrderDirections;
        var w = _trainer.CurrentParameters;
        var random = new Random(unchecked(options.Seed * 7919 + (int)_trainer.StepCount));
        var n = labels.Length;
        Array.Clear(_gradient);
        double lossTotal = 0;
        for (var d = 0; d < k; d++)
        {
            FillGaussian(random);
            TensorPrimitives.MultiplyAdd(_direction, c, w, _probe);
            var plus = _trainer.EvaluateSum(features, labels, _probeValues, n).LossSum / n;
            TensorPrimitives.MultiplyAdd(_direction, -c, w, _probe);
            var minus = _trainer.EvaluateSum(features, labels, _probeValues, n).LossSum / n;
            lossTotal += (plus + minus) / 2;
            TensorPrimitives.MultiplyAdd(_direction, (float)((plus - minus) / (2 * c * k)), _gradient, _gradient);
        }

        var loss = (float)(lossTotal / k);
        if (!float.IsFinite(loss))
        {
            return _trainer.Commit(loss);
        }

        _trainer.PrepareScalars();
        _session.RunWithBinding(_runOptions, _bindings[_trainer.CurrentSide]);
        return _trainer.Commit(loss);
    }

    private void FillGaussian(Random random)
    {
        var tensors = _trainer.Layout.Tensors;
        for (var t = 0; t < tensors.Count; t++)
        {
            var span = _direction.AsSpan(tensors[t].Offset, tensors[t].Length);
            if (!_trainable[t])
            {
                span.Clear();
                continue;
            }

            for (var i = 0; i < span.Length; i += 2)
            {
                // Box–Muller: two independent N(0, 1) samples per pair of uniforms.
                var u1 = 1.0 - random.NextDouble();
                var u2 = random.NextDouble();
                var r = Math.Sqrt(-2 * Math.Log(u1));
                span[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
                if (i + 1 < span.Length)
                {
                    span[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
                }
            }
        }
    }

    public void Dispose()
    {
        foreach (var b in _bindings)
        {
            b?.Dispose();
        }

        _session.Dispose();
        _runOptions.Dispose();
        foreach (var v in _gradientValues.Concat(_probeValues).Concat(_views))
        {
            v.Dispose();
        }
    }
}
