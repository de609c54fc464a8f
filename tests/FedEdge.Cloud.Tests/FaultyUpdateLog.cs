using FedEdge.Cloud.Storage;
using Microsoft.Extensions.DependencyInjection;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// The cloud's own update log with a storage fault that a test switches on and off: while <see cref="Failing"/>, every
/// append throws an <see cref="IOException"/> (as a full disk or an unwritable folder would) and writes nothing.
/// </summary>
public sealed class FaultyUpdateLog : IUpdateLog
{
    private IUpdateLog? _inner;
    private int _refused;

    public volatile bool Failing;

    /// <summary>Appends refused while failing.</summary>
    public int Refused => _refused;

    public async Task<IModelUpdateLog> OpenAsync(string model, long pending, CancellationToken cancellationToken = default) =>
        new ModelLog(await _inner!.OpenAsync(model, pending, cancellationToken), this);

    /// <summary>Wraps the cloud's <see cref="IUpdateLog"/> registration (call after the cloud registered its services).</summary>
    public void WrapIn(IServiceCollection services)
    {
        var registration = services.Last(d => d.ServiceType == typeof(IUpdateLog));
        var factory = registration.ImplementationFactory ?? throw new InvalidOperationException("the cloud registers its update log with a factory");
        services.Remove(registration);
        services.AddSingleton<IUpdateLog>(sp =>
        {
            _inner = (IUpdateLog)factory(sp);
            return this;
        });
    }

    private sealed class ModelLog(IModelUpdateLog inner, FaultyUpdateLog owner) : IModelUpdateLog
    {
        public IReadOnlyList<LoggedUpdate> Recovered => inner.Recovered;

        public Task AppendAsync(long segment, LoggedUpdate update)
        {
            if (!owner.Failing) return inner.AppendAsync(segment, update);
            Interlocked.Increment(ref owner._refused);
            return Task.FromException(new IOException("injected storage fault: the update log cannot be written"));
        }

        public Task DropThroughAsync(long segment) => inner.DropThroughAsync(segment);
    }
}
