namespace FedEdge.Training;

/// <summary>Optimizer applied inside the training-step graph (PyTorch semantics).</summary>
public enum OptimizerKind
{
    /// <summary>w ← w − η·g.</summary>
    Sgd,

    /// <summary>Heavy ball as torch.optim.SGD(momentum=μ): b ← μ·b + g; w ← w − η·b.</summary>
    Momentum,

    /// <summary>torch.optim.Adam (Kingma &amp; Ba 2015) with bias correction; weight decay as L2 added to g.</summary>
    Adam,
}

/// <summary>Training loss on the model's output [batch, classes] and int64 labels.</summary>
public enum LossKind
{
    /// <summary>Softmax cross-entropy on logits, mean over the batch (torch.nn.CrossEntropyLoss).</summary>
    CrossEntropy,

    /// <summary>Mean squared error between the output and one-hot labels, mean over all elements (torch.nn.MSELoss).</summary>
    MeanSquaredError,
}

/// <summary>Where ONNX Runtime runs the graphs.</summary>
public enum ExecutionDevice
{
    Cpu,
    Cuda,

    /// <summary>CUDA when the native ONNX Runtime offers it, otherwise CPU.</summary>
    Auto,
}

/// <summary>Whether a CPU trainer with several threads splits batches across them (<see cref="TrainingOptions.BatchSplit"/>).</summary>
public enum BatchSplitMode
{
    /// <summary>
    /// Split where it pays: at least 8 samples and enough forward values per shard (convolutional models at usual batch
    /// sizes; about twice as fast on two cores for the zoo cnn), otherwise one graph whose nodes use all threads.
    /// </summary>
    Auto,

    /// <summary>Split whenever samples are independent, one shard per thread (at least one sample each).</summary>
    Always,

    /// <summary>Always one graph whose nodes ONNX Runtime parallelises.</summary>
    Never,
}

/// <summary>Hyper-parameters and runtime settings of an <see cref="OnnxTrainer"/>.</summary>
public sealed record TrainingOptions
{
    /// <summary>Samples per training step (the step graph is built for this batch; other sizes get their own graph on first use).</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Learning rate η (can be changed between steps with <see cref="OnnxTrainer.LearningRate"/>).</summary>
    public float LearningRate { get; init; } = 0.01f;

    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Sgd;

    /// <summary>Momentum μ for <see cref="OptimizerKind.Momentum"/>.</summary>
    public float Momentum { get; init; } = 0.9f;

    /// <summary>L2 weight decay λ: g ← g + λ·w (applied after clipping, as torch.optim does).</summary>
    public float WeightDecay { get; init; }

    public float AdamBeta1 { get; init; } = 0.9f;

    public float AdamBeta2 { get; init; } = 0.999f;

    public float AdamEpsilon { get; init; } = 1e-8f;

    /// <summary>Global gradient-norm clipping (torch.nn.utils.clip_grad_norm_); 0 disables.</summary>
    public float ClipNorm { get; init; }

    /// <summary>
    /// FedProx proximal coefficient μ (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020):
    /// the local objective is f(w) + μ/2·‖w − w_global‖², w_global set by <see cref="OnnxTrainer.SetProximalAnchor"/>. 0 disables.
    /// </summary>
    public float ProximalMu { get; init; }

    public LossKind Loss { get; init; } = LossKind.CrossEntropy;

    /// <summary>ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose (all cores).</summary>
    public int Threads { get; init; }

    /// <summary>
    /// With several CPU threads, split each batch into one shard per thread and run the forward and backward pass of the
    /// shards side by side, one thread each, then one update: the same step as the single graph up to float summation
    /// order. Only for models whose samples are independent (no BatchNorm or other batch statistics). See
    /// <see cref="BatchSplitMode"/>.
    /// </summary>
    public BatchSplitMode BatchSplit { get; init; } = BatchSplitMode.Auto;

    public ExecutionDevice Device { get; init; } = ExecutionDevice.Cpu;

    /// <summary>
    /// Train with two-point zeroth-order gradient estimates (forward passes only) instead of backpropagation,
    /// for models with operators that have no gradient rule.
    /// </summary>
    public bool ZerothOrder { get; init; }

    /// <summary>Random directions per zeroth-order step (each costs two forward passes).</summary>
    public int ZerothOrderDirections { get; init; } = 1;

    /// <summary>Perturbation scale c of the zeroth-order estimate (f(w + c·u) − f(w − c·u)) / 2c.</summary>
    public float ZerothOrderSmoothing { get; init; } = 1e-3f;

    /// <summary>Seed for dropout masks and zeroth-order directions.</summary>
    public int Seed { get; init; }

    /// <summary>Checks ranges; throws <see cref="ArgumentOutOfRangeException"/> naming the bad field.</summary>
    public void Validate()
    {
        Check(BatchSize > 0, nameof(BatchSize), BatchSize);
        Check(float.IsFinite(LearningRate) && LearningRate >= 0, nameof(LearningRate), LearningRate);
        Check(Momentum is >= 0 and < 1, nameof(Momentum), Momentum);
        Check(WeightDecay >= 0, nameof(WeightDecay), WeightDecay);
        Check(AdamBeta1 is >= 0 and < 1, nameof(AdamBeta1), AdamBeta1);
        Check(AdamBeta2 is >= 0 and < 1, nameof(AdamBeta2), AdamBeta2);
        Check(AdamEpsilon > 0, nameof(AdamEpsilon), AdamEpsilon);
        Check(ClipNorm >= 0, nameof(ClipNorm), ClipNorm);
        Check(ProximalMu >= 0, nameof(ProximalMu), ProximalMu);
        Check(Threads >= 0, nameof(Threads), Threads);
        Check(ZerothOrderDirections > 0, nameof(ZerothOrderDirections), ZerothOrderDirections);
        Check(ZerothOrderSmoothing > 0, nameof(ZerothOrderSmoothing), ZerothOrderSmoothing);
    }

    private static void Check(bool ok, string name, object value)
    {
        if (!ok)
        {
            throw new ArgumentOutOfRangeException(name, value, $"TrainingOptions.{name} = {value} is out of range.");
        }
    }
}
