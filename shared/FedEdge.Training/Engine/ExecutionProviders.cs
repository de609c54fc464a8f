using Microsoft.ML.OnnxRuntime;

namespace FedEdge.Training.Engine;

/// <summary>Creates ONNX Runtime session options for a device choice and reports which provider runs.</summary>
internal static class ExecutionProviders
{
    public const string Cpu = "CPU";
    public const string Cuda = "CUDA";

    public static bool CudaAvailable()
    {
        try
        {
            return OrtEnv.Instance().GetAvailableProviders().Contains("CUDAExecutionProvider");
        }
        catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    public static SessionOptions Create(TrainingOptions options, out string provider)
    {
        // EXTENDED, not ALL: ALL adds only the NCHWc layout pass, which cannot touch a Conv whose weights are graph
        // inputs (all of ours) and only wrapped the zoo cnn's second pool and its gradient in Reorder copies (six
        // more nodes; per-node profile sums 2.60/2.46 ms against 2.81/2.68 ms with ALL, interleaved runs).
        var so = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = options.Threads,
            InterOpNumThreads = 1,
        };
        // Diagnostics: FEDEDGE_ORT_PROFILE=prefix writes ONNX Runtime's per-node timing JSON (prefix_<date>.json).
        if (Environment.GetEnvironmentVariable("FEDEDGE_ORT_PROFILE") is { Length: > 0 } profile)
        {
            so.ProfileOutputPathPrefix = profile; // must precede EnableProfiling, which passes it to ONNX Runtime
            so.EnableProfiling = true;
        }

        // Diagnostics: FEDEDGE_ORT_OPTIMIZED=path.onnx writes the graph as ONNX Runtime rewrote it (fusions, NCHWc layouts).
        if (Environment.GetEnvironmentVariable("FEDEDGE_ORT_OPTIMIZED") is { Length: > 0 } optimized)
        {
            so.OptimizedModelFilePath = optimized;
        }

        provider = Cpu;
        if (options.Device == ExecutionDevice.Cpu)
        {
            return so;
        }

        if (CudaAvailable())
        {
            try
            {
                so.AppendExecutionProvider_CUDA(0);
                provider = Cuda;
                return so;
            }
            catch (OnnxRuntimeException e) when (options.Device == ExecutionDevice.Auto)
            {
                _ = e; // fall back to CPU below
            }
        }

        if (options.Device == ExecutionDevice.Cuda)
        {
            so.Dispose();
            throw new InvalidOperationException(
                "Device 'cuda' was requested but this ONNX Runtime has no CUDA execution provider " +
                "(build with -p:OnnxRuntimeFlavor=Gpu on a machine with CUDA, or use --device auto|cpu).");
        }

        return so;
    }
}
