using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using FedEdge.Compression;
using FedEdge.Compression.ErrorFeedback;
using FedEdge.Protocol;
using FedEdge.Protocol.Messages;
using Google.Protobuf;

namespace FedEdge.Cli.Commands;

/// <summary>
/// `fededge bench codecs`: encode/decode/validate throughput of every update codec on a d-coordinate
/// Gaussian vector, encoded size, bytes allocated per call on the hot paths, error-feedback cost, and
/// the cost of signing and verifying an update envelope.
/// </summary>
internal static class BenchCodecsCommand
{
    public static Command Create()
    {
        var d = new Option<int>("--d") { Description = "Coordinates per update.", DefaultValueFactory = _ => 1_000_000 };
        var reps = new Option<int>("--reps") { Description = "Timed repetitions per operation (best is reported).", DefaultValueFactory = _ => 10 };
        var specs = new Option<string[]>("--codec")
        {
            Description = "Codec specs to measure (repeatable).",
            DefaultValueFactory = _ => ["fp32", "fp16", "topk:0.01", "topk:0.01,values=fp16", "sign", "sign:block=256"],
            AllowMultipleArgumentsPerToken = true,
        };
        var command = new Command("codecs", "Time the update codecs, error feedback and envelope signing.") { d, reps, specs };
        command.SetAction(parse => Run(parse.GetValue(d), Math.Max(1, parse.GetValue(reps)), parse.GetValue(specs) ?? []));
        return command;
    }

    private static int Run(int d, int reps, string[] specs)
    {
        float[] values = Gaussian(d, 42);
        double inputBytes = 4.0 * d;
        Console.WriteLine($"d = {d} ({inputBytes / 1e6:F1} MB fp32), {Environment.ProcessorCount} cores, {RuntimeInformation.ProcessArchitecture}, " +
                          $"Vector256 {(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "yes" : "no")}; GB/s are of fp32 input/output, best of {reps}");
        Console.WriteLine();
        Console.WriteLine($"{"codec",-24} {"bytes",11} {"ratio",7} {"enc ms",8} {"enc GB/s",9} {"dec ms",8} {"dec GB/s",9} {"val ms",8} {"alloc B/call",13}");
        var decoded = new float[d];
        foreach (string spec in specs)
        {
            IUpdateCodec codec = UpdateCodecs.Parse(spec);
            byte[] buffer = new byte[codec.MaxEncodedSize(d)];
            int size = codec.Encode(values, buffer);
            ReadOnlyMemory<byte> payload = buffer.AsMemory(0, size);
            double encode = Best(reps, () => codec.Encode(values, buffer));
            double decode = Best(reps, () => codec.Decode(payload.Span, decoded));
            double validate = Best(reps, () => codec.Validate(payload.Span, out _));
            long allocated = AllocatedPerCall(reps, () =>
            {
                codec.Encode(values, buffer);
                codec.Decode(payload.Span, decoded);
            });
            Console.WriteLine($"{codec.Spec,-24} {size,11:N0} {inputBytes / size,7:F1} {encode * 1e3,8:F2} {inputBytes / encode / 1e9,9:F2} " +
                              $"{decode * 1e3,8:F2} {inputBytes / decode / 1e9,9:F2} {validate * 1e3,8:F2} {allocated,13:N0}");
        }

        Console.WriteLine();
        Console.WriteLine($"{"error feedback (sign)",-24} {"ms/round",9} {"alloc B/round",14}");
        foreach (ErrorFeedbackKind kind in Enum.GetValues<ErrorFeedbackKind>())
        {
            ErrorFeedbackCompressor ef = ErrorFeedbackCompressor.Create(kind, SignCodec.Default, d, eta: 0.1f);
            var writer = new System.Buffers.ArrayBufferWriter<byte>(ef.Codec.MaxEncodedSize(d));
            double seconds = Best(reps, () =>
            {
                writer.ResetWrittenCount();
                ef.Compress(values, writer);
            });
            long allocated = AllocatedPerCall(reps, () =>
            {
                writer.ResetWrittenCount();
                ef.Compress(values, writer);
            });
            Console.WriteLine($"{ef.Name,-24} {seconds * 1e3,9:F2} {allocated,14:N0}");
        }

        Console.WriteLine();
        using SigningKeyPair key = SigningKeyPair.Generate("bench-device");
        var verifier = new UpdateEnvelopeVerifier(new UpdateVerifierOptions { Federation = "bench" }, new VerificationKeyRing(key.VerificationKey));
        byte[] signPayload = SignCodec.Default.Encode(values);
        UpdateEnvelope Envelope() => new()
        {
            Federation = "bench",
            DeviceId = key.KeyId,
            Codec = SignCodec.Default.Spec,
            Dimension = d,
            Payload = ByteString.CopyFrom(signPayload),
            SampleCount = 1,
        };
        var signer = new UpdateEnvelopeSigner(key);
        byte[] signed = signer.Sign(Envelope());
        double signSeconds = Best(reps, () => signer.Sign(Envelope()));
        double verifySeconds = Best(reps, () =>
        {
            if (!verifier.Verify(signed).IsAccepted)
            {
                throw new InvalidOperationException("The benchmark envelope did not verify.");
            }
        });
        Console.WriteLine($"sign envelope ({signed.Length:N0} bytes, sign codec): {signSeconds * 1e3:F2} ms; verify + validate: {verifySeconds * 1e3:F2} ms");
        return 0;
    }

    private static double Best(int reps, Action action)
    {
        // Warm-up by calls and by time: tiered compilation promotes hot methods in the background after a
        // delay, so a fixed small number of calls still measures tier-0/OSR code (up to 4x slower here).
        long warmStart = Stopwatch.GetTimestamp();
        for (int i = 0; i < 40 || Stopwatch.GetElapsedTime(warmStart).TotalMilliseconds < 400; i++)
        {
            action();
        }
        double best = double.MaxValue;
        for (int i = 0; i < reps; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return best;
    }

    private static long AllocatedPerCall(int reps, Action action)
    {
        action();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < reps; i++)
        {
            action();
        }
        return (GC.GetAllocatedBytesForCurrentThread() - before) / reps;
    }

    private static float[] Gaussian(int d, int seed)
    {
        var random = new Random(seed);
        var values = new float[d];
        for (int i = 0; i < d; i++)
        {
            values[i] = (float)(Math.Sqrt(-2.0 * Math.Log(1.0 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        }
        return values;
    }
}
