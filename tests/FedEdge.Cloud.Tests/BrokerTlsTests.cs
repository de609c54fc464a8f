using System.Net;
using System.Net.Sockets;
using FedEdge.Cloud.Broker;
using FedEdge.Cloud.Ingestion;
using FedEdge.Protocol;
using FedEdge.Protocol.Tls;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace FedEdge.Cloud.Tests;

/// <summary>
/// The embedded broker's TLS listener (issue 15): devices over TLS with the CA pinned, plain and untrusting clients
/// refused, device client certificates (mutual TLS) that log a device in as itself only, and explicit address families.
/// Certificates are made by the code of `fededge certs` (<see cref="CertificateDirectory"/>).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class BrokerTlsTests : IDisposable
{
    private readonly TempDirectory _directory = new();
    private readonly CertificateDirectory _ca;
    private readonly CertificateDirectory _deviceCa;
    private readonly CertificateDirectory _rogue;

    public BrokerTlsTests()
    {
        var now = TimeProvider.System.GetUtcNow();
        _ca = new CertificateDirectory(Path.Combine(_directory.Path, "ca"));
        _ca.CreateAuthority("test broker CA", CertificateDirectory.DefaultAuthorityValidity, now);
        _ca.IssueServer("broker", ["localhost", "127.0.0.1", "::1"], CertificateDirectory.DefaultValidity, now);
        _deviceCa = new CertificateDirectory(Path.Combine(_directory.Path, "devices"));
        _deviceCa.CreateAuthority("test device CA", CertificateDirectory.DefaultAuthorityValidity, now);
        _deviceCa.IssueDevice("dev-a", CertificateDirectory.DefaultValidity, now);
        // Another CA with the same names: what an attacker in the middle, or a misissued certificate, would present.
        _rogue = new CertificateDirectory(Path.Combine(_directory.Path, "rogue"));
        _rogue.CreateAuthority("test broker CA", CertificateDirectory.DefaultAuthorityValidity, now);
        _rogue.IssueServer("broker", ["localhost", "127.0.0.1"], CertificateDirectory.DefaultValidity, now);
        _rogue.IssueDevice("dev-a", CertificateDirectory.DefaultValidity, now);
    }

    public void Dispose() => _directory.Dispose();

    private Task<CloudTestHost> StartCloudAsync(bool deviceCertificates = false, bool requireClientCertificate = false, string tlsBind = "127.0.0.1") =>
        CloudTestHost.StartAsync(Path.Combine(_directory.Path, "cloud"), o =>
        {
            o.Tls.CertificateFile = _ca.Certificate("broker");
            o.Tls.KeyFile = _ca.Key("broker");
            o.Tls.Port = TestPorts.Reserve();
            o.Tls.BindAddress = tlsBind;
            if (deviceCertificates) o.Tls.DeviceCaFile = _deviceCa.AuthorityCertificate;
            o.Tls.RequireClientCertificate = requireClientCertificate;
        });

    private static int TlsPort(CloudTestHost cloud) => cloud.Services.GetRequiredService<EmbeddedBroker>().TlsPort;

    /// <summary>Connects over TLS; the CONNACK, or the exception that stopped the connection (handshake, refusal).</summary>
    internal static async Task<(IMqttClient Client, MqttClientConnectResult? Result, Exception? Error)> ConnectAsync(string host, int port, string clientId,
        string? user, string? password, MqttClientTlsOptions? tls)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var builder = new MqttClientOptionsBuilder().WithTcpServer(host, port).WithClientId(clientId)
            .WithProtocolVersion(MqttProtocolVersion.V500).WithTimeout(TimeSpan.FromSeconds(5));
        if (user is not null) builder.WithCredentials(user, password ?? "");
        if (tls is not null) builder.WithTlsOptions(tls);
        try
        {
            return (client, await client.ConnectAsync(builder.Build()), null);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException or System.Security.Authentication.AuthenticationException or IOException)
        {
            return (client, null, e);
        }
    }

    private MqttClientTlsOptions Pinned(string? deviceCertificate = null, CertificateDirectory? issuer = null) =>
        PinnedTls.ClientOptions(_ca.AuthorityCertificate, deviceCertificate is null ? null : (issuer ?? _deviceCa).Certificate(deviceCertificate),
            deviceCertificate is null ? null : (issuer ?? _deviceCa).Key(deviceCertificate));

    /// <summary>
    /// The TLS listener, the one devices reach over the network, is bounded as the plain one is: a CONNECT announcing
    /// 200 MiB inside the TLS session closes the connection before its body is read.
    /// </summary>
    [Fact]
    public async Task OverTlsAConnectAnnouncing200MiBIsRefusedBeforeItsBodyIsRead()
    {
        await using var cloud = await StartCloudAsync();
        var broker = cloud.Services.GetRequiredService<EmbeddedBroker>();
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, TlsPort(cloud));
        // The attacker accepts any server certificate: what is tested is the broker's side.
        await using var tls = new System.Net.Security.SslStream(tcp.GetStream(), leaveInnerStreamOpen: false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync("localhost");
        await tls.WriteAsync((byte[])[.. HostileMqttClient.FixedHeader(0x10, 200L << 20), .. new byte[4096]]);
        await tls.FlushAsync();

        // The broker closes the session: the read ends (0 bytes or a reset) instead of waiting for 200 MiB.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var closed = false;
        try
        {
            closed = await tls.ReadAsync(new byte[256], timeout.Token) == 0;
        }
        catch (IOException)
        {
            closed = true;
        }
        Assert.True(closed, "the broker kept the TLS connection open after a 200 MiB announcement");
        Assert.True(broker.OversizedPackets >= 1);
    }

    [Fact]
    public async Task ADeviceOverTheTlsListenerWithThePinnedCaLogsIn_AndItsSignedUpdateIsIngested()
    {
        await using var cloud = await StartCloudAsync();
        var (_, password, key) = cloud.Registry.Add("dev-1", "f1");
        var federation = cloud.Grains.GetGrain<FedEdge.Cloud.Abstractions.IFederationGrain>("f1");
        var started = await federation.StartAsync(new FedEdge.Cloud.Abstractions.FederationConfig { Model = "logreg", Codec = "fp32", Rule = "mean", Rounds = 0 },
            new Orleans.Concurrency.Immutable<byte[]>(TestModels.Logreg()));
        var (client, result, error) = await ConnectAsync("localhost", TlsPort(cloud), "dev-1", "dev-1", password, Pinned());
        Assert.True(result?.ResultCode == MqttClientConnectResultCode.Success, $"TLS login: {result?.ResultCode} {error}");
        using var device = client;
        using var signer = SigningKeyPair.FromPrivateKey("dev-1", key);
        var envelope = TestDevice.SignedFp32(signer, "f1", "dev-1", started.ParameterCount);
        var metrics = cloud.Services.GetRequiredService<IngestionMetrics>();
        var before = metrics.Accepted;
        // The PUBACK comes after the update is stored: success here means the cloud took it over TLS.
        await TestDevice.PublishFrameAsync(device, MqttTopics.Update("f1", "dev-1"), TestDevice.WholeFrame(envelope));
        Assert.Equal(before + 1, metrics.Accepted);
    }

    [Fact]
    public async Task APlaintextClientIsRefusedOnTheTlsPort_AndAClientThatDoesNotTrustTheCaCannotConnect()
    {
        await using var cloud = await StartCloudAsync();
        var (_, password, _) = cloud.Registry.Add("dev-1", "f1");
        var port = TlsPort(cloud);

        var (plain, plainResult, plainError) = await ConnectAsync("127.0.0.1", port, "dev-1", "dev-1", password, tls: null);
        plain.Dispose();
        Assert.Null(plainResult);
        Assert.NotNull(plainError);

        // Pinned to another CA that issued a certificate for the same names: refused in the handshake.
        var (rogue, rogueResult, rogueError) = await ConnectAsync("localhost", port, "dev-1", "dev-1", password, PinnedTls.ClientOptions(_rogue.AuthorityCertificate));
        rogue.Dispose();
        Assert.Null(rogueResult);
        Assert.NotNull(rogueError);

        // The system's trust store does not know the deployment's CA either.
        var (system, systemResult, systemError) = await ConnectAsync("localhost", port, "dev-1", "dev-1", password, new MqttClientTlsOptionsBuilder().UseTls().Build());
        system.Dispose();
        Assert.Null(systemResult);
        Assert.NotNull(systemError);

        // The same login with the pinned CA succeeds: the refusals above are the TLS checks, not the credentials.
        var (good, goodResult, goodError) = await ConnectAsync("localhost", port, "dev-1", "dev-1", password, Pinned());
        using (good) Assert.True(goodResult?.ResultCode == MqttClientConnectResultCode.Success, $"pinned login: {goodResult?.ResultCode} {goodError}");
    }

    [Fact]
    public async Task ABrokerCertificateIssuedForAnotherNameIsRefusedByThePinnedClient()
    {
        await using var cloud = await StartCloudAsync(tlsBind: "127.0.0.1");
        var (_, password, _) = cloud.Registry.Add("dev-1", "f1");
        // The certificate names localhost, 127.0.0.1 and ::1; 127.0.0.2 reaches the same listener only if it binds it, so
        // dial the listener by a name the certificate lacks through the target-host override.
        var tls = Pinned();
        tls.TargetHost = "mqtt.example.org";
        var (client, result, error) = await ConnectAsync("127.0.0.1", TlsPort(cloud), "dev-1", "dev-1", password, tls);
        client.Dispose();
        Assert.Null(result);
        Assert.NotNull(error);
    }

    [Fact]
    public async Task ADeviceCertificateLogsTheDeviceInAsItself_AndCannotPublishOrLogInAsAnotherDevice()
    {
        await using var cloud = await StartCloudAsync(deviceCertificates: true);
        cloud.Registry.Add("dev-a", "f1");
        var (_, passwordB, _) = cloud.Registry.Add("dev-b", "f1");
        var port = TlsPort(cloud);
        var broker = cloud.Services.GetRequiredService<EmbeddedBroker>();

        // No password: the certificate (CN = dev-a, signed by the device CA) is the login.
        var (a, aResult, aError) = await ConnectAsync("localhost", port, "dev-a", user: null, password: null, Pinned("dev-a"));
        using (a)
        {
            Assert.True(aResult?.ResultCode == MqttClientConnectResultCode.Success, $"certificate login: {aResult?.ResultCode} {aError}");
            var own = await a.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Telemetry("f1", "dev-a")).WithPayload([1])
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
            Assert.True(own.IsSuccess, $"own telemetry: {own.ReasonCode}");
            var refusedBefore = broker.RefusedPublications;
            var asB = await a.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(MqttTopics.Update("f1", "dev-b")).WithPayload([1, 2, 3])
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
            Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, asB.ReasonCode);
            Assert.Equal(refusedBefore + 1, broker.RefusedPublications);
        }

        // dev-a's certificate with dev-b's client id, or with dev-b's user name and password: refused.
        var (asClientB, clientBResult, _) = await ConnectAsync("localhost", port, "dev-b", user: null, password: null, Pinned("dev-a"));
        asClientB.Dispose();
        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, clientBResult?.ResultCode);
        var (asUserB, userBResult, _) = await ConnectAsync("localhost", port, "dev-b", "dev-b", passwordB, Pinned("dev-a"));
        asUserB.Dispose();
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, userBResult?.ResultCode);

        // A certificate for dev-a from another CA does not log anyone in.
        var (forged, forgedResult, forgedError) = await ConnectAsync("localhost", port, "dev-a", user: null, password: null, Pinned("dev-a", _rogue));
        forged.Dispose();
        Assert.True(forgedResult is null || forgedResult.ResultCode != MqttClientConnectResultCode.Success, $"forged certificate: {forgedResult?.ResultCode} {forgedError}");

        // Revoking the device in the registry locks its certificate out too.
        Assert.True(cloud.Registry.Revoke("dev-a"));
        var (revoked, revokedResult, _) = await ConnectAsync("localhost", port, "dev-a", user: null, password: null, Pinned("dev-a"));
        revoked.Dispose();
        Assert.Equal(MqttClientConnectResultCode.Banned, revokedResult?.ResultCode);
    }

    [Fact]
    public async Task WhenClientCertificatesAreRequiredAPasswordAloneDoesNotLogIn()
    {
        await using var cloud = await StartCloudAsync(deviceCertificates: true, requireClientCertificate: true);
        var (_, passwordB, _) = cloud.Registry.Add("dev-b", "f1");
        var (client, result, error) = await ConnectAsync("localhost", TlsPort(cloud), "dev-b", "dev-b", passwordB, Pinned());
        client.Dispose();
        Assert.Null(result);
        Assert.NotNull(error);
    }

    [Fact]
    public async Task BindingIPv4LoopbackDoesNotListenOnIPv6_AndAnIPv6BindingNotOnIPv4()
    {
        await using var cloud = await StartCloudAsync(tlsBind: "::1");
        var plainPort = cloud.BrokerPort;
        var tlsPort = TlsPort(cloud);
        // Plain listener: --bind 127.0.0.1 (UseLoopback). Before the fix MQTTnet also bound [::]:port.
        await ExpectListeningAsync(IPAddress.Loopback, plainPort);
        await ExpectRefusedAsync(IPAddress.IPv6Loopback, plainPort);
        // TLS listener bound to ::1 only.
        await ExpectListeningAsync(IPAddress.IPv6Loopback, tlsPort);
        await ExpectRefusedAsync(IPAddress.Loopback, tlsPort);
    }

    [Fact]
    public void PlainTcpOnANonLoopbackAddressIsRefusedAtStartUnlessAllowed_AndMqttsNeedsAPinnedCa()
    {
        var options = new CloudOptions { BrokerBindAddress = "0.0.0.0" };
        var refusal = Assert.Throws<ArgumentException>(() => BrokerTlsValidation.Validate(options));
        Assert.Contains("AllowPlaintextOnNonLoopback", refusal.Message);
        options.AllowPlaintextOnNonLoopback = true;
        BrokerTlsValidation.Validate(options);

        Assert.Throws<ArgumentException>(() => BrokerTlsValidation.Validate(new CloudOptions { Broker = "mqtt://broker.example.org:1883" }));
        var noCa = Assert.Throws<ArgumentException>(() => BrokerTlsValidation.Validate(new CloudOptions { Broker = "mqtts://broker.example.org" }));
        Assert.Contains("CaFile", noCa.Message);
        BrokerTlsValidation.Validate(new CloudOptions { Broker = "mqtts://broker.example.org", Tls = { CaFile = _ca.AuthorityCertificate } });
        Assert.Equal(("broker.example.org", 8883), new CloudOptions { Broker = "mqtts://broker.example.org" }.ExternalBrokerEndpoint());
        Assert.Throws<ArgumentException>(() => BrokerTlsValidation.Validate(new CloudOptions { BrokerBindAddress = "127.0.0.1,::1,::" }));
    }

    [Fact]
    public void CertificatesAreWrittenAsPemWithPrivateKeysReadableByTheOwnerOnly()
    {
        foreach (var key in new[] { _ca.AuthorityKey, _ca.Key("broker"), _deviceCa.Key("dev-a") })
        {
            Assert.StartsWith("-----BEGIN PRIVATE KEY-----", File.ReadAllText(key));
            if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        }
        using var server = TlsCertificates.LoadWithPrivateKey(_ca.Certificate("broker"), _ca.Key("broker"));
        var names = server.Extensions.OfType<System.Security.Cryptography.X509Certificates.X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(["localhost"], names.EnumerateDnsNames());
        Assert.Equal([IPAddress.Loopback, IPAddress.IPv6Loopback], names.EnumerateIPAddresses());
        using var device = TlsCertificates.LoadWithPrivateKey(_deviceCa.Certificate("dev-a"), _deviceCa.Key("dev-a"));
        Assert.Equal("dev-a", BrokerTlsEndpoint.DeviceId(device));
        Assert.Throws<InvalidOperationException>(() => _ca.CreateAuthority("again", TimeSpan.FromDays(1), TimeProvider.System.GetUtcNow()));
    }

    private static async Task ExpectListeningAsync(IPAddress address, int port)
    {
        using var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(address, port);
        Assert.True(socket.Connected);
    }

    private static async Task ExpectRefusedAsync(IPAddress address, int port)
    {
        using var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        var refused = await Assert.ThrowsAsync<SocketException>(() => socket.ConnectAsync(address, port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }
}
