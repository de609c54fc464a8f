using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Tests;

/// <summary>Keeps every log line (category, level, message) written through it, for tests that count log lines.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<(string Category, LogLevel Level, string Message)> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public IReadOnlyList<string> Messages(string category, LogLevel minimum = LogLevel.Warning) =>
        [.. Lines.Where(l => l.Category == category && l.Level >= minimum).Select(l => l.Message)];

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            provider.Lines.Enqueue((category, logLevel, formatter(state, exception)));
    }
}
