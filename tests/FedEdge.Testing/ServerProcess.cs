using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace FedEdge.Testing;

/// <summary>
/// A child process a test starts (a broker, a database, the fededge CLI), its output kept for failure messages, and
/// the three ways tests end it: SIGTERM as a service manager does, SIGKILL as a crash does, and dispose.
/// </summary>
public sealed class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private ServerProcess(Process process, string name)
    {
        _process = process;
        Name = name;
    }

    public string Name { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>The last 40 lines the process wrote to stdout and stderr.</summary>
    public string OutputTail => string.Join('\n', _output.TakeLast(40));

    public bool OutputContains(string text) => _output.Any(line => line.Contains(text, StringComparison.Ordinal));

    public static ServerProcess Start(ProcessStartInfo info, string? name = null)
    {
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        var process = Process.Start(info) ?? throw new InvalidOperationException($"{info.FileName} did not start");
        var server = new ServerProcess(process, name ?? Path.GetFileName(info.FileName));
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) server._output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) server._output.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return server;
    }

    /// <summary>
    /// Polls <paramref name="ready"/> until it holds; fails with the output if the process exits first or the deadline
    /// passes. A probe that throws counts as "not yet".
    /// </summary>
    public async Task WaitUntilReadyAsync(Func<Task<bool>> ready, string what, TimeSpan timeout, Func<string>? describe = null, CancellationToken cancellationToken = default)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"{Name} exited with {_process.ExitCode} before {what}:\n{OutputTail}\n{describe?.Invoke()}");
            try
            {
                if (await ready()) return;
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or InvalidOperationException)
            {
            }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{Name} did not get to {what} within {timeout.TotalSeconds:0} s:\n{OutputTail}\n{describe?.Invoke()}");
            await Task.Delay(50, cancellationToken);
        }
    }

    /// <summary>SIGTERM, as systemd stops a service; waits for the exit (killing it after <paramref name="timeout"/>).</summary>
    public async Task StopAsync(TimeSpan? timeout = null)
    {
        if (_process.HasExited) return;
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
            await kill!.WaitForExitAsync();
        using var limit = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        try
        {
            await _process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
        }
    }

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}
