namespace FedEdge.Training;

/// <summary>Mean loss and accuracy over an evaluated set.</summary>
public readonly record struct EvaluationResult(double Loss, double Accuracy, int Count);
