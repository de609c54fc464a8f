using System.Diagnostics;
using System.Text.RegularExpressions;
using FedEdge.Cli.Commands;
using FedEdge.Cloud;
using FedEdge.Edge;
using Microsoft.Extensions.Configuration;
using YamlDotNet.RepresentationModel;

namespace FedEdge.EndToEnd.Tests;

/// <summary>
/// The deploy assets (deploy/) refer only to what exists: every command line parses with the real `fededge` command
/// tree, every settings file and environment variable binds to a real option (unknown keys are errors), the images,
/// stages, ports, volumes, config maps and secrets they name are defined, the image builds with the publish command CI
/// runs, and the systemd unit passes `systemd-analyze verify`. Structural checks: they need no container runtime or
/// cluster, and each fails on a misspelt flag, key, port or reference.
/// </summary>
public sealed partial class DeployAssetTests
{
    private static string Deploy(params string[] parts) => RepositoryRoot.Combine(["deploy", .. parts]);

    // ---- command lines and settings ----

    /// <summary>Fails with the parser's errors when <paramref name="arguments"/> is not a valid `fededge` command line.</summary>
    private static void AssertParses(IReadOnlyList<string> arguments, string where)
    {
        var result = FedEdgeCommand.Create().Parse([.. arguments]);
        Assert.True(result.Errors.Count == 0, $"{where}: `fededge {string.Join(' ', arguments)}` does not parse: {string.Join("; ", result.Errors.Select(e => e.Message))}");
    }

    /// <summary>Binds the JSON's section <paramref name="section"/> to <typeparamref name="T"/>, failing on any key T does not have.</summary>
    private static T BindStrictly<T>(IConfiguration configuration, string section) where T : new()
    {
        var options = new T();
        configuration.GetSection(section).Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        return options;
    }

    private static T BindJson<T>(string json, string section) where T : new() =>
        BindStrictly<T>(new ConfigurationBuilder().AddJsonStream(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json))).Build(), section);

    /// <summary>FEDEDGE_Section__Key__Sub=value variables bound as the hosts bind them, failing on unknown keys.</summary>
    private static T BindEnvironment<T>(IEnumerable<(string Name, string Value)> variables, string section) where T : new()
    {
        var data = variables.Where(v => v.Name.StartsWith("FEDEDGE_", StringComparison.Ordinal))
            .ToDictionary(v => v.Name["FEDEDGE_".Length..].Replace("__", ":", StringComparison.Ordinal), v => (string?)v.Value);
        Assert.All(data.Keys, key => Assert.StartsWith(section + ":", key, StringComparison.Ordinal));
        return BindStrictly<T>(new ConfigurationBuilder().AddInMemoryCollection(data).Build(), section);
    }

    [Fact]
    public void TheCheckersThemselvesCatchAMisspeltFlagAndKey()
    {
        Assert.Throws<Xunit.Sdk.TrueException>(() => AssertParses(["cloud", "--data-dri", "/x"], "control"));
        Assert.Throws<InvalidOperationException>(() => BindJson<CloudOptions>("""{ "Cloud": { "BrokerPrt": 1 } }""", CloudOptions.Section));
        Assert.Throws<InvalidOperationException>(() => BindEnvironment<EdgeAgentOptions>([("FEDEDGE_Edge__Data__Sorce", "x")], EdgeAgentOptions.SectionName));
    }

    // ---- Kubernetes ----

    private static List<YamlMappingNode> Manifests()
    {
        var kustomization = Load(Deploy("kubernetes", "kustomization.yaml"));
        var listed = ((YamlSequenceNode)kustomization["resources"]).Select(n => ((YamlScalarNode)n).Value!).ToList();
        var present = Directory.GetFiles(Deploy("kubernetes"), "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order();
        Assert.Equal(present, listed.Order()); // every manifest is deployed, and every listed one exists
        return listed.Select(f => Load(Deploy("kubernetes", f))).ToList();
    }

    private static YamlMappingNode Load(string path)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(path);
        stream.Load(reader);
        return (YamlMappingNode)stream.Documents.Single().RootNode;
    }

    private static YamlMappingNode Kind(List<YamlMappingNode> manifests, string kind) =>
        manifests.Single(m => S(m["kind"]) == kind);

    private static string S(YamlNode node) => ((YamlScalarNode)node).Value!;

    private static YamlMappingNode M(YamlNode node, params string[] path) =>
        path.Aggregate((YamlMappingNode)node, (n, key) => (YamlMappingNode)n[key]);

    private static IEnumerable<YamlMappingNode> Seq(YamlNode node, string key) =>
        ((YamlMappingNode)node).Children.TryGetValue(key, out var value) ? ((YamlSequenceNode)value).Cast<YamlMappingNode>() : [];

    [Fact]
    public void TheKubernetesManifestsReferenceOnlyWhatExists()
    {
        var manifests = Manifests();
        var names = manifests.Select(m => (Kind: S(m["kind"]), Name: S(M(m, "metadata")["name"]))).ToHashSet();
        var deployment = Kind(manifests, "Deployment");
        var pod = M(deployment, "spec", "template");
        var container = Seq(M(pod, "spec"), "containers").Single();

        // The command line is the CLI's, and its settings file is the ConfigMap's key, mounted where --config says.
        var args = ((YamlSequenceNode)container["args"]).Select(S).ToList();
        AssertParses(args, "deployment.yaml");
        var configPath = args[args.IndexOf("--config") + 1];
        var mounts = Seq(container, "volumeMounts").ToDictionary(m => S(m["name"]), m => S(m["mountPath"]));
        var volumes = Seq(M(pod, "spec"), "volumes").ToDictionary(v => S(v["name"]));
        Assert.Equal(mounts.Keys.Order(), volumes.Keys.Order());
        var configVolume = mounts.Single(m => configPath.StartsWith(m.Value + "/", StringComparison.Ordinal)).Key;
        var configMapName = S(M(volumes[configVolume], "configMap")["name"]);
        Assert.Contains(("ConfigMap", configMapName), names);
        var configMap = manifests.Single(m => S(m["kind"]) == "ConfigMap" && S(M(m, "metadata")["name"]) == configMapName);
        var settings = BindJson<CloudOptions>(S(M(configMap, "data")[Path.GetFileName(configPath)]), CloudOptions.Section);
        foreach (var volume in volumes.Values.Where(v => v.Children.ContainsKey("persistentVolumeClaim")))
            Assert.Contains(("PersistentVolumeClaim", S(M(volume, "persistentVolumeClaim")["claimName"])), names);

        // Environment: the Secret's keys and the container's variables are real settings.
        var secretName = S(M(Seq(container, "envFrom").Single(), "secretRef")["name"]);
        var secret = manifests.Single(m => S(m["kind"]) == "Secret" && S(M(m, "metadata")["name"]) == secretName);
        var variables = M(secret, "stringData").Children.Select(c => (S(c.Key), S(c.Value)))
            .Concat(Seq(container, "env").Select(e => (S(e["name"]), S(e["value"])))).ToList();
        Assert.All(variables, v => Assert.Matches("^(FEDEDGE_Cloud__|DOTNET_)", v.Item1));
        BindEnvironment<CloudOptions>(variables, CloudOptions.Section);

        // Ports: the container's are the cloud's (broker from the settings, silo and gateway defaults); the probes and
        // the Service name container ports; the Service selects the pods.
        var ports = Seq(container, "ports").ToDictionary(p => S(p["name"]), p => int.Parse(S(p["containerPort"]), System.Globalization.CultureInfo.InvariantCulture));
        var defaults = new CloudOptions();
        if (args.Contains("--tls-cert"))
        {
            // Devices reach the TLS listener; plain MQTT stays on the pod's loopback, so no plain port is exposed.
            Assert.Equal(settings.Tls.Port, ports["mqtts"]);
            Assert.DoesNotContain("mqtt", ports.Keys);
            foreach (var file in new[] { "--tls-cert", "--tls-key" }.Select(flag => args[args.IndexOf(flag) + 1]))
            {
                var mount = mounts.Single(m => file.StartsWith(m.Value + "/", StringComparison.Ordinal) && m.Key != configVolume);
                // A Secret the operator creates (deploy/README.md says how), not committed with values.
                var secretVolume = S(M(volumes[mount.Key], "secret")["secretName"]);
                Assert.Contains(secretVolume, File.ReadAllText(Deploy("README.md")), StringComparison.Ordinal);
            }
        }
        else
        {
            Assert.Equal(settings.BrokerPort, ports["mqtt"]);
        }
        Assert.Equal(defaults.SiloPort, ports["silo"]);
        Assert.Equal(defaults.GatewayPort, ports["gateway"]);
        foreach (var probe in new[] { "readinessProbe", "livenessProbe" })
            Assert.Contains(S(M(container, probe, "tcpSocket")["port"]), ports.Keys);
        var service = Kind(manifests, "Service");
        Assert.All(Seq(M(service, "spec"), "ports"), p => Assert.Contains(S(p["targetPort"]), ports.Keys));
        var podLabels = M(pod, "metadata", "labels").Children.ToDictionary(c => S(c.Key), c => S(c.Value));
        Assert.All(M(service, "spec", "selector").Children, c => Assert.Equal(S(c.Value), podLabels.GetValueOrDefault(S(c.Key))));
        Assert.Equal(M(deployment, "spec", "selector", "matchLabels").Children.Select(c => (S(c.Key), S(c.Value))).Order(),
            podLabels.Select(l => (l.Key, l.Value)).Order());
        // The image is the Dockerfile's cloud target.
        Assert.StartsWith("fededge-cloud:", S(container["image"]), StringComparison.Ordinal);
        Assert.Contains("AS cloud", File.ReadAllText(Deploy("docker", "Dockerfile")), StringComparison.Ordinal);
    }

    // ---- Compose ----

    [Fact]
    public void TheComposeFileReferencesOnlyWhatExists()
    {
        var compose = Load(Deploy("docker", "compose.yaml"));
        var services = M(compose, "services");
        var declaredVolumes = M(compose, "volumes").Children.Keys.Select(S).ToHashSet();
        var dockerfile = File.ReadAllText(Deploy("docker", "Dockerfile"));
        foreach (var (nameNode, serviceNode) in services.Children)
        {
            var name = S(nameNode);
            var service = (YamlMappingNode)serviceNode;
            if (service.Children.TryGetValue("build", out var buildNode))
            {
                var build = (YamlMappingNode)buildNode;
                var context = Path.GetFullPath(Path.Combine(Deploy("docker"), S(build["context"])));
                Assert.True(File.Exists(Path.Combine(context, S(build["dockerfile"]))), $"{name}: dockerfile");
                Assert.Contains($"AS {S(build["target"])}", dockerfile, StringComparison.Ordinal);
            }
            if (service.Children.TryGetValue("volumes", out var volumesNode))
            {
                foreach (var volume in ((YamlSequenceNode)volumesNode).Select(S))
                {
                    var source = volume.Split(':')[0];
                    if (source.StartsWith('.') || source.StartsWith('/'))
                        Assert.True(File.Exists(Path.GetFullPath(Path.Combine(Deploy("docker"), source))), $"{name}: bind mount {source}");
                    else
                        Assert.Contains(source, declaredVolumes);
                }
            }
            if (service.Children.TryGetValue("depends_on", out var dependsOn))
                Assert.All(((YamlMappingNode)dependsOn).Children.Keys.Select(S), d => Assert.Contains(d, services.Children.Keys.Select(S)));
        }

        // The cloud's command line and settings file; the broker it names is the mosquitto service on the port the
        // shipped Mosquitto configuration listens on, which the service publishes.
        var cloud = M(services, "cloud");
        var command = ((YamlSequenceNode)cloud["command"]).Select(S).ToList();
        AssertParses(command, "compose.yaml cloud");
        BindJson<CloudOptions>(File.ReadAllText(Deploy("docker", "cloud.appsettings.json")), CloudOptions.Section);
        var broker = new Uri(command[command.IndexOf("--broker") + 1]);
        Assert.Contains(broker.Host, services.Children.Keys.Select(S));
        Assert.Contains(MosquittoListenerPorts(), p => p == broker.Port);
        Assert.Contains($"{broker.Port}:{broker.Port}", ((YamlSequenceNode)M(services, broker.Host)["ports"]).Select(S));
        var environment = M(cloud, "environment").Children.Select(c => (S(c.Key), S(c.Value))).ToList();
        Assert.All(environment, e => Assert.True(e.Item1.StartsWith("Logging__", StringComparison.Ordinal) || e.Item1.StartsWith("FEDEDGE_Cloud__", StringComparison.Ordinal), e.Item1));

        // The one-shot services' fededge command lines (inside their shell commands).
        var invocations = 0;
        foreach (var (nameNode, serviceNode) in services.Children)
        {
            if (!((YamlMappingNode)serviceNode).Children.TryGetValue("command", out var commandNode) || commandNode is not YamlSequenceNode lines) continue;
            foreach (Match invocation in FededgeInvocation().Matches(string.Join(' ', lines.Select(S))))
            {
                AssertParses(invocation.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries), $"compose.yaml {S(nameNode)}");
                invocations++;
            }
        }
        Assert.True(invocations >= 1, "no fededge command line found in the one-shot services");
    }

    private static IEnumerable<int> MosquittoListenerPorts() =>
        File.ReadLines(Deploy("mosquitto", "mosquitto.conf")).Select(l => l.Trim())
            .Where(l => l.StartsWith("listener ", StringComparison.Ordinal))
            .Select(l => int.Parse(l.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture));

    [GeneratedRegex(@"/opt/fededge/fededge ([^&)]+)")]
    private static partial Regex FededgeInvocation();

    // ---- Dockerfile ----

    [Fact]
    public void TheImageBuildsWithCIsPublishCommand_AndItsStagesRunValidCommandLines()
    {
        var dockerfile = File.ReadAllText(Deploy("docker", "Dockerfile"));
        var ci = File.ReadAllText(RepositoryRoot.Combine("scripts", "check-arm64.sh"));
        // The same project and flags as the linux-arm64 publish that CI runs and tests under qemu; only the runtime
        // identifier (by target architecture) and the output folder differ.
        static HashSet<string> Flags(string text)
        {
            // The command itself, not a message that mentions it: the one that names a configuration.
            var line = PublishCommand().Matches(text).SingleOrDefault(m => m.Value.Contains(" -c ", StringComparison.Ordinal));
            Assert.True(line is not null, "no `dotnet publish -c ...` command");
            var words = line.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
            foreach (var valued in new[] { "-r", "-o" })
            {
                var at = words.IndexOf(valued);
                if (at >= 0) words.RemoveRange(at, 2);
            }
            return [.. words];
        }
        Assert.Equal(Flags(ci).Order(), Flags(dockerfile).Order());

        var defaults = new CloudOptions();
        var cloudStage = dockerfile[dockerfile.IndexOf("AS cloud", StringComparison.Ordinal)..dockerfile.IndexOf("AS edge", StringComparison.Ordinal)];
        var edgeStage = dockerfile[dockerfile.IndexOf("AS edge", StringComparison.Ordinal)..];
        // The broker's TLS port (plain MQTT listens on loopback only unless explicitly allowed), the silo and the gateway.
        var exposed = ExposeLine().Match(cloudStage).Groups[1].Value.Split(' ').Select(int.Parse).Order();
        Assert.Equal(new[] { defaults.Tls.Port, defaults.SiloPort, defaults.GatewayPort }.Order(), exposed);
        foreach (var (stage, where) in new[] { (cloudStage, "cloud"), (edgeStage, "edge") })
        {
            var cmd = CmdLine().Match(stage);
            Assert.True(cmd.Success, $"{where}: no CMD");
            AssertParses(Regex.Matches(cmd.Groups[1].Value, "\"([^\"]*)\"").Select(m => m.Groups[1].Value).ToList(), $"Dockerfile {where}");
        }
    }

    [GeneratedRegex(@"dotnet (publish [^\n\\&>]+)")]
    private static partial Regex PublishCommand();

    [GeneratedRegex(@"\nEXPOSE ([0-9 ]+)")]
    private static partial Regex ExposeLine();

    [GeneratedRegex(@"\nCMD \[([^\]]+)\]")]
    private static partial Regex CmdLine();

    // ---- systemd (the Raspberry Pi) ----

    [Fact]
    public void TheSystemdUnitPassesSystemdAnalyzeVerify_AndItsCommandLineAndEnvironmentAreValid()
    {
        var unit = File.ReadAllText(Deploy("systemd", "fededge-edge.service"));
        var execStart = Regex.Match(unit, @"\nExecStart=/opt/fededge/fededge ([^\n]+)").Groups[1].Value;
        AssertParses(execStart.Replace("%d", "/run/credentials/fededge-edge.service", StringComparison.Ordinal)
            .Replace("%S", "/var/lib", StringComparison.Ordinal).Split(' '), "fededge-edge.service");

        // verify needs the binary ExecStart names; the built apphost stands in for /opt/fededge/fededge.
        var apphost = Path.Combine(Path.GetDirectoryName(FedEdgeCli.DllPath)!, "fededge");
        using var dir = new TempDirectory();
        var copy = dir.Combine("fededge-edge.service");
        File.WriteAllText(copy, unit.Replace("/opt/fededge/fededge", apphost, StringComparison.Ordinal));
        var (code, output) = Verify(copy);
        Assert.True(code == 0 && output.Length == 0, $"systemd-analyze verify: exit {code}\n{output}");

        // The check can fail: a misspelt directive is reported.
        File.WriteAllText(copy, unit.Replace("/opt/fededge/fededge", apphost, StringComparison.Ordinal).Replace("RestartSec=", "RestartSecs=", StringComparison.Ordinal));
        Assert.Contains("RestartSecs", Verify(copy).Output, StringComparison.Ordinal);

        // edge.env: every variable, set or shown commented out, is a real setting of the agent.
        var variables = File.ReadLines(Deploy("systemd", "edge.env"))
            .Select(l => l.TrimStart('#').Trim())
            .Where(l => l.StartsWith("FEDEDGE_", StringComparison.Ordinal))
            .Select(l => (l[..l.IndexOf('=')], l[(l.IndexOf('=') + 1)..])).ToList();
        Assert.NotEmpty(variables);
        BindEnvironment<EdgeAgentOptions>(variables, EdgeAgentOptions.SectionName);
    }

    private static (int Code, string Output) Verify(string unitFile)
    {
        const string tool = "/usr/bin/systemd-analyze";
        Assert.True(File.Exists(tool), "systemd-analyze is needed: run scripts/install-deps.sh --test (installs systemd)");
        using var process = Process.Start(new ProcessStartInfo(tool, ["verify", unitFile]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stdout = process.StandardOutput.ReadToEnd();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, (stdout + stderr).Trim());
    }
}
