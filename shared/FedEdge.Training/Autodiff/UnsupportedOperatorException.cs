namespace FedEdge.Training.Autodiff;

/// <summary>A node on the path from the parameters to the loss has no gradient rule (or an unsupported form).</summary>
public sealed class UnsupportedOperatorException : Exception
{
    public UnsupportedOperatorException(string opType, string nodeName, string detail)
        : base($"Cannot differentiate {opType} node '{nodeName}': {detail} " +
               "Train this model with --zeroth-order (TrainingOptions.ZerothOrder), which needs forward passes only.")
    {
        OpType = opType;
        NodeName = nodeName;
    }

    public string OpType { get; }

    public string NodeName { get; }
}
