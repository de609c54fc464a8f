using FedEdge.Cloud.Security;
using FedEdge.Cloud.Storage;

namespace FedEdge.Cloud.Tests;

public sealed class SecurityTests
{
    [Fact]
    public void PasswordHashIsMosquittosFormat_AndVerifiesOnlyTheRightPassword()
    {
        var hash = MosquittoPasswordHash.Create("s3cret", iterations: 1000);
        var parts = hash.Split('$');
        Assert.Equal(["", "7", "1000"], parts[..3]);
        Assert.Equal(12, Convert.FromBase64String(parts[3]).Length);
        Assert.Equal(64, Convert.FromBase64String(parts[4]).Length);
        Assert.True(MosquittoPasswordHash.Verify("s3cret", hash));
        Assert.False(MosquittoPasswordHash.Verify("s3cret!", hash));
        Assert.False(MosquittoPasswordHash.Verify("s3cret", "$6$abc$def"));
        Assert.False(MosquittoPasswordHash.Verify("s3cret", "$7$x$AAAA$AAAA"));
        Assert.NotEqual(hash, MosquittoPasswordHash.Create("s3cret", iterations: 1000)); // salted
    }

    [Fact]
    public void VerifiesAHashWrittenByMosquittoPasswd()
    {
        // Written by `mosquitto_passwd -b` (Mosquitto 2.0.11) for the password "secret".
        const string hash = "$7$101$Y+GaWvUiQUvEcEkZ$f2JxRw9JcWPAO1OcVLnokiOYIFHAHNm/sMEeKWSMUw79ZxtPswMiPizGffT6drYD+2E3qaSoGNA1SkIWfVp3BA==";
        Assert.True(MosquittoPasswordHash.Verify("secret", hash));
        Assert.False(MosquittoPasswordHash.Verify("Secret", hash));
    }

    [Fact]
    public void RegistryStoresNoSecrets_AndRevocationBlocksLogin()
    {
        using var data = new TempDirectory();
        var registry = new DeviceRegistry(Path.Combine(data.Path, "registry.db"));
        var (record, password, privateKey) = registry.Add("dev-1", "f1");
        Assert.Throws<InvalidOperationException>(() => registry.Add("dev-1", "f1"));
        Assert.Throws<ArgumentException>(() => registry.Add("bad/id", "f1"));
        Assert.Throws<ArgumentException>(() => registry.Add("dev-2", "f+"));
        Assert.Equal(Ed25519KeyFile.PublicKeyOf(privateKey), record.PublicKey);

        var bytes = File.ReadAllBytes(Path.Combine(data.Path, "registry.db"));
        Assert.Equal(-1, bytes.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(password)));

        Assert.NotNull(registry.Authenticate("dev-1", password, out _));
        Assert.Null(registry.Authenticate("dev-1", password + "x", out var bad));
        Assert.Equal("bad password", bad);
        Assert.True(registry.Revoke("dev-1"));
        Assert.False(registry.Revoke("nobody"));
        Assert.Null(registry.Authenticate("dev-1", password, out var revoked));
        Assert.Equal("device revoked", revoked);
        Assert.True(new DeviceRegistry(Path.Combine(data.Path, "registry.db")).Find("dev-1")!.Revoked);
    }

    /// <summary>Find keeps its prepared lookups: a revocation by another instance (`fededge devices revoke`) must still show at once.</summary>
    [Fact]
    public void KeptLookupsSeeARevocationByAnotherProcess_AndServeConcurrentCallers()
    {
        using var data = new TempDirectory();
        var path = Path.Combine(data.Path, "registry.db");
        using var cloudView = new DeviceRegistry(path);
        for (var i = 0; i < 8; i++) cloudView.Add($"dev-{i}", "f1");
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
            Assert.Equal($"dev-{i % 8}", cloudView.Find($"dev-{i % 8}")!.DeviceId));
        Assert.False(cloudView.Find("dev-1")!.Revoked);
        using (var command = new DeviceRegistry(path)) Assert.True(command.Revoke("dev-1"));
        Assert.True(cloudView.Find("dev-1")!.Revoked);
        Assert.False(cloudView.Find("dev-2")!.Revoked);
        Assert.Null(cloudView.Find("nobody"));
    }

    [Fact]
    public void AclFileGivesEachDeviceOnlyItsOwnTopics()
    {
        var devices = new[]
        {
            new DeviceRecord("dev-1", "f1", "$7$1$a$b", new byte[32], false, DateTimeOffset.UnixEpoch),
            new DeviceRecord("dev-2", "f2", "$7$1$c$d", new byte[32], true, DateTimeOffset.UnixEpoch),
        };
        var service = new ServiceIdentity("cloud-svc", "pw");
        var acl = MosquittoConfigWriter.AclFile(devices, service);
        Assert.Contains("user dev-1\ntopic write fededge/f1/update/dev-1\ntopic write fededge/f1/status/dev-1\ntopic write fededge/f1/telemetry/dev-1\ntopic read fededge/f1/model/#\n", acl);
        Assert.Contains("user cloud-svc\ntopic readwrite #\n", acl);
        Assert.DoesNotContain("dev-2", acl);
        var passwd = MosquittoConfigWriter.PasswordFile(devices, service);
        Assert.Contains("dev-1:$7$1$a$b\n", passwd);
        Assert.DoesNotContain("dev-2", passwd);
        Assert.StartsWith("cloud-svc:$7$", passwd);
    }

    [Fact]
    public async Task ModelStoreIsContentAddressed_AndDetectsDamage()
    {
        using var data = new TempDirectory();
        var store = new FileSystemModelStore(Path.Combine(data.Path, "models"));
        var blob = new byte[] { 1, 2, 3, 4 };
        var sha = await store.PutAsync(blob);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(blob)), sha);
        Assert.Equal(sha, await store.PutAsync(blob));
        Assert.Equal(blob, await store.GetAsync(sha));
        Assert.Null(await store.GetAsync(new string('0', 64)));
        // Only the blob itself: no temporary file is left behind.
        Assert.Equal([Path.Combine(data.Path, "models", sha[..2], sha)], Directory.GetFiles(Path.Combine(data.Path, "models"), "*", SearchOption.AllDirectories));
        File.WriteAllBytes(Path.Combine(data.Path, "models", sha[..2], sha), [9, 9]);
        await Assert.ThrowsAsync<InvalidDataException>(() => store.GetAsync(sha));
    }

    [Fact]
    public void NoDeviceCanBeRegisteredUnderTheServiceUserName()
    {
        using var data = new TempDirectory();
        var credentials = Path.Combine(data.Path, "service-credentials.json");
        var stored = ServiceIdentity.LoadOrCreate(credentials, "cloud-main");
        var registry = new DeviceRegistry(Path.Combine(data.Path, "registry.db"))
        {
            ReservedNames = ServiceIdentity.ReservedUserNames(credentials, "cloud-configured"),
        };
        foreach (var name in new[] { ServiceIdentity.DefaultUserName, stored.UserName, "cloud-configured" })
        {
            var refused = Assert.Throws<ArgumentException>(() => registry.Add(name, "f1"));
            Assert.Contains($"'{name}' is reserved for the cloud's own MQTT identity", refused.Message);
        }
        Assert.Empty(registry.List());
        // A registry opened without the reservation is still refused by default.
        Assert.Throws<ArgumentException>(() => new DeviceRegistry(Path.Combine(data.Path, "registry.db")).Add(ServiceIdentity.DefaultUserName, "f1"));
    }

    [Fact]
    public void TheMosquittoExportRefusesADeviceWithTheServiceUserName_AndWritesNothing()
    {
        using var data = new TempDirectory();
        // A registry from before the reservation, where a device took the service's name.
        var registry = new DeviceRegistry(Path.Combine(data.Path, "registry.db")) { ReservedNames = new HashSet<string>() };
        registry.Add("dev-1", "f1");
        registry.Add(ServiceIdentity.DefaultUserName, "f1");
        var service = new ServiceIdentity(ServiceIdentity.DefaultUserName, "service-secret");
        var passwd = Path.Combine(data.Path, "passwd");
        var acl = Path.Combine(data.Path, "acl");

        var refused = Assert.Throws<InvalidOperationException>(() => MosquittoConfigWriter.Write(registry, service, passwd, acl));
        Assert.Contains($"Device '{ServiceIdentity.DefaultUserName}' has the cloud's service user name", refused.Message);
        Assert.False(File.Exists(passwd));
        Assert.False(File.Exists(acl));

        // Revoked, it is left out of the files, and the export goes through with one line per user.
        Assert.True(registry.Revoke(ServiceIdentity.DefaultUserName));
        MosquittoConfigWriter.Write(registry, service, passwd, acl);
        var users = File.ReadAllLines(passwd).Select(l => l.Split(':')[0]).ToList();
        Assert.Equal([ServiceIdentity.DefaultUserName, "dev-1"], users);
    }
}
