using System.CommandLine;
using FedEdge.Data;
using FedEdge.Onnx;
using FedEdge.Training;

namespace FedEdge.Cli.Commands;

/// <summary>`fededge eval`: loss and accuracy of an ONNX model on a data set's test split (or its training split when it has none).</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "ONNX model to evaluate.", Required = true };
        var data = new Option<string>("--data") { Description = "fashion-mnist | npy:X.npy,Y.npy[,Xtest,Ytest] | csv:train.csv[,test.csv]", Required = true };
        var loss = new Option<string>("--loss") { Description = "cross-entropy | mse", DefaultValueFactory = _ => "cross-entropy" };
        loss.AcceptOnlyFromAmong("cross-entropy", "mse");
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads (0 = all cores).", DefaultValueFactory = _ => 0 };
        var command = new Command("eval", "Print the loss and accuracy of an ONNX model on a data set.") { model, data, loss, threads };
        command.SetAction(parse => TrainCommand.Guarded(() =>
        {
            var spec = parse.GetValue(data)!;
            var source = DatasetSource.Parse(spec);
            var loaded = source.Load(source.Kind == DatasetSourceKind.FashionMnist ? FeatureStorage.Byte : FeatureStorage.Float32);
            var (set, name) = loaded.Test is { } test ? (test, "test") : (loaded.Train, "training");
            var options = new TrainingOptions { Loss = TrainCommand.ParseLoss(parse.GetValue(loss)!), Threads = parse.GetValue(threads), ZerothOrder = true };
            // Zeroth-order mode builds no gradient graph, so evaluation works for any model ONNX Runtime can run.
            using var trainer = OnnxTrainer.Create(OnnxModelFile.Load(parse.GetValue(model)!.FullName), options);
            TrainCommand.CheckShapes(trainer, set, spec);
            var r = TrainCommand.Evaluate(trainer, set);
            Console.WriteLine($"{name} set: {r.Count} samples, loss {r.Loss:F4}, accuracy {100 * r.Accuracy:F2}%");
            return 0;
        }));
        return command;
    }
}
