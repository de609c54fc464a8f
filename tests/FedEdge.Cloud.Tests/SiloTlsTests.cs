using FedEdge.Cloud.Abstractions;
using FedEdge.Cloud.Hosting;
using FedEdge.Protocol.Tls;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// Orleans over TLS (Cloud:SiloTls): a silo started with a certificate from the cluster CA serves an Orleans client
/// that presents one too, and refuses a client without TLS or with a certificate from another CA.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class SiloTlsTests : IDisposable
{
    private readonly TempDirectory _directory = new();
    private readonly CertificateDirectory _cluster;
    private readonly CertificateDirectory _rogue;

    public SiloTlsTests()
    {
        var now = TimeProvider.System.GetUtcNow();
        _cluster = new CertificateDirectory(Path.Combine(_directory.Path, "cluster"));
        _cluster.CreateAuthority("cluster CA", TimeSpan.FromDays(2), now);
        _cluster.IssueServer("silo", ["localhost", "127.0.0.1"], TimeSpan.FromDays(1), now);
        _cluster.IssueServer("client", ["localhost"], TimeSpan.FromDays(1), now);
        _rogue = new CertificateDirectory(Path.Combine(_directory.Path, "rogue"));
        _rogue.CreateAuthority("cluster CA", TimeSpan.FromDays(2), now);
        _rogue.IssueServer("client", ["localhost"], TimeSpan.FromDays(1), now);
    }

    public void Dispose() => _directory.Dispose();

    [Fact]
    public async Task ASiloWithTlsServesAClientWithAClusterCertificate_AndRefusesPlainOrForeignClients()
    {
        var handshakeFailures = new TlsFailureLog();
        await using var cloud = await CloudTestHost.StartAsync(Path.Combine(_directory.Path, "cloud"), o => o.SiloTls = new SiloTlsOptions
        {
            CertificateFile = _cluster.Certificate("silo"),
            KeyFile = _cluster.Key("silo"),
            CaFile = _cluster.AuthorityCertificate,
        }, configureHost: b => b.Logging.AddProvider(handshakeFailures));
        // The cloud's own work runs through the TLS silo: a federation starts (grain calls, storage).
        var started = await cloud.Grains.GetGrain<IFederationGrain>("f-tls").StartAsync(new FederationConfig { Model = "logreg", Codec = "fp32", Rule = "mean", Rounds = 0 },
            new Orleans.Concurrency.Immutable<byte[]>(TestModels.Logreg()));
        Assert.True(started.ParameterCount > 0);

        var trusted = new SiloTlsOptions { CertificateFile = _cluster.Certificate("client"), KeyFile = _cluster.Key("client"), CaFile = _cluster.AuthorityCertificate };
        using (var connecting = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        using (var client = await StartClientAsync(cloud.Options, trusted, connecting.Token))
        {
            var status = await client.Services.GetRequiredService<IClusterClient>().GetGrain<IFederationGrain>("f-tls").GetStatusAsync();
            Assert.Equal(started.ParameterCount, status.ParameterCount);
        }

        // A client without TLS, and one with a certificate from another CA: the silo refuses the handshake (logged), and
        // the client never gets a session (its start is abandoned once the refusal is seen).
        var foreign = new SiloTlsOptions { CertificateFile = _rogue.Certificate("client"), KeyFile = _rogue.Key("client"), CaFile = _cluster.AuthorityCertificate };
        foreach (var refusedClient in new[] { new SiloTlsOptions(), foreign })
        {
            var before = handshakeFailures.Count;
            using var abandon = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var start = StartClientAsync(cloud.Options, refusedClient, abandon.Token);
            await Eventually.HoldsAsync(() => Task.FromResult(handshakeFailures.Count > before), "the silo refusing the client's TLS handshake");
            Assert.False(start.IsCompletedSuccessfully);
            await abandon.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => start);
        }
    }

    [Fact]
    public void SiloTlsNeedsTheClusterCa()
    {
        var refusal = Assert.Throws<ArgumentException>(() => SiloTls.Validate(new SiloTlsOptions { CertificateFile = _cluster.Certificate("silo") }));
        Assert.Contains("CaFile", refusal.Message);
    }

    /// <summary>An Orleans client of the cloud's gateway, connected and through one grain call (or canceled).</summary>
    private static async Task<IHost> StartClientAsync(CloudOptions cloud, SiloTlsOptions tls, CancellationToken cancellationToken)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.UseOrleansClient(client =>
        {
            client.UseLocalhostClustering(cloud.GatewayPort, cloud.ServiceId, cloud.ClusterId);
            SiloTls.Apply(client, tls);
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellationToken);
            // Connected at start; a first call proves the TLS session carries requests.
            await host.Services.GetRequiredService<IClusterClient>().GetGrain<IFederationGrain>("probe").GetStatusAsync().WaitAsync(cancellationToken);
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }
}

/// <summary>Counts the silo's refused TLS handshakes (Orleans.Connections.Security logs each as "Authentication failed").</summary>
internal sealed class TlsFailureLog : ILoggerProvider, ILogger
{
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public ILogger CreateLogger(string categoryName) => categoryName.StartsWith("Orleans.Connections.Security.TlsServerConnectionMiddleware", StringComparison.Ordinal) ? this : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (exception is System.Security.Authentication.AuthenticationException || formatter(state, exception).Contains("Authentication failed", StringComparison.Ordinal))
            Interlocked.Increment(ref _count);
    }

    public void Dispose()
    {
    }
}
