using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Ingestion;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;
using FedEdge.Protocol.Tls;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// The shipped Mosquitto configuration's TLS listener (deploy/mosquitto/mosquitto.conf) with certificates made by the
/// code of `fededge certs`: the cloud's own connection over mqtts:// with its CA pinned, a device's update over TLS,
/// plain and untrusting clients refused.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class MosquittoTlsTests : IAsyncLifetime
{
    private readonly TempDirectory _data = new();
    private CertificateDirectory _certificates = null!;
    private MosquittoServer _broker = null!;
    private CloudTestHost _cloud = null!;
    private string _password = null!;
    private byte[] _key = null!;

    public async Task InitializeAsync()
    {
        Assert.True(MosquittoServer.IsInstalled, MosquittoServer.InstallHint);
        var now = TimeProvider.System.GetUtcNow();
        _certificates = new CertificateDirectory(Path.Combine(_data.Path, "certs"));
        _certificates.CreateAuthority("test CA", CertificateDirectory.DefaultAuthorityValidity, now);
        _certificates.IssueServer("broker", ["localhost", "127.0.0.1"], CertificateDirectory.DefaultValidity, now);
        var data = new CloudDataDirectory(_data.Path);
        var registry = new DeviceRegistry(data.RegistryDatabase);
        (_, _password, _key) = registry.Add("dev-1", "f1");
        var passwd = Path.Combine(_data.Path, "mosquitto.passwd");
        var acl = Path.Combine(_data.Path, "mosquitto.acl");
        MosquittoConfigWriter.Write(registry, ServiceIdentity.LoadOrCreate(data.ServiceCredentials), passwd, acl);
        // The shipped configuration, its TLS listener with this test's certificates.
        _broker = await MosquittoServer.StartAsync(new MosquittoOptions
        {
            Directory = _data.Path,
            PasswordFile = passwd,
            AclFile = acl,
            ShippedSettings = true,
            Tls = new MosquittoTls(_certificates.AuthorityCertificate, _certificates.Certificate("broker"), _certificates.Key("broker")),
        });
        _cloud = await CloudTestHost.StartAsync(_data.Path, o =>
        {
            o.Broker = $"mqtts://localhost:{_broker.TlsPort}";
            o.Tls.CaFile = _certificates.AuthorityCertificate;
        });
    }

    public async Task DisposeAsync()
    {
        await _cloud.DisposeAsync();
        _broker.Dispose();
        _data.Dispose();
    }

    [Fact]
    public async Task TheCloudAndADeviceTalkOverMosquittosTlsListener_AndPlainOrUntrustingClientsAreRefused()
    {
        Assert.True(_cloud.Services.GetRequiredService<MqttServiceConnection>().IsConnected);
        Assert.Contains($"Opening ipv4 listen socket on port {_broker.TlsPort}", _broker.Log());
        var federation = _cloud.Grains.GetGrain<FedEdge.Cloud.Abstractions.IFederationGrain>("f1");
        var started = await federation.StartAsync(new FedEdge.Cloud.Abstractions.FederationConfig { Model = "logreg", Codec = "fp32", Rule = "mean", Rounds = 0 },
            new Orleans.Concurrency.Immutable<byte[]>(TestModels.Logreg()));

        var pinned = PinnedTls.ClientOptions(_certificates.AuthorityCertificate);
        var (device, result, error) = await BrokerTlsTests.ConnectAsync("localhost", _broker.TlsPort, "dev-1", "dev-1", _password, pinned);
        using (device)
        {
            Assert.True(result?.ResultCode == MqttClientConnectResultCode.Success, $"TLS login to Mosquitto: {result?.ResultCode} {error} {_broker.Log()}");
            using var signer = SigningKeyPair.FromPrivateKey("dev-1", _key);
            var envelope = TestDevice.SignedFp32(signer, "f1", "dev-1", started.ParameterCount);
            var metrics = _cloud.Services.GetRequiredService<IngestionMetrics>();
            var before = metrics.Accepted;
            await TestDevice.PublishFrameAsync(device, MqttTopics.Update("f1", "dev-1"), TestDevice.WholeFrame(envelope));
            // Mosquitto acknowledged it; the cloud receives it over its own TLS connection.
            await Eventually.HoldsAsync(() => Task.FromResult(metrics.Accepted == before + 1), "the update ingested through the cloud's mqtts:// connection");
        }

        var (plain, plainResult, plainError) = await BrokerTlsTests.ConnectAsync("127.0.0.1", _broker.TlsPort, "dev-1", "dev-1", _password, tls: null);
        plain.Dispose();
        Assert.True(plainResult is null, $"plain MQTT on the TLS port: {plainResult?.ResultCode}");
        Assert.NotNull(plainError);

        var rogue = new CertificateDirectory(Path.Combine(_data.Path, "rogue"));
        rogue.CreateAuthority("test CA", TimeSpan.FromDays(1), TimeProvider.System.GetUtcNow());
        var (untrusting, untrustingResult, untrustingError) = await BrokerTlsTests.ConnectAsync("localhost", _broker.TlsPort, "dev-1", "dev-1", _password,
            PinnedTls.ClientOptions(rogue.AuthorityCertificate));
        untrusting.Dispose();
        Assert.True(untrustingResult is null, $"client pinning another CA: {untrustingResult?.ResultCode}");
        Assert.NotNull(untrustingError);
    }
}
