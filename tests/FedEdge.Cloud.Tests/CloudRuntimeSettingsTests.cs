using FedEdge.Cloud.Hosting;

namespace FedEdge.Cloud.Tests;

/// <summary>The cloud's deployments carry the runtime settings its ingest figures were measured with.</summary>
public sealed class CloudRuntimeSettingsTests
{
    private static string Deploy(params string[] parts)
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "FedEdge.sln")))
            directory = directory.Parent;
        return File.ReadAllText(Path.Combine([directory!.FullName, "deploy", .. parts]));
    }

    [Fact]
    public void The_cloud_image_sets_them_and_the_edge_image_does_not()
    {
        var dockerfile = Deploy("docker", "Dockerfile");
        var cloudStage = dockerfile[dockerfile.IndexOf("AS cloud", StringComparison.Ordinal)..dockerfile.IndexOf("AS edge", StringComparison.Ordinal)];
        var edgeStage = dockerfile[dockerfile.IndexOf("AS edge", StringComparison.Ordinal)..];
        foreach (var (name, value) in CloudRuntimeSettings.EnvironmentVariables)
        {
            Assert.Contains($"{name}={value}", cloudStage, StringComparison.Ordinal);
            Assert.DoesNotContain(name, edgeStage, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void The_kubernetes_deployment_sets_them()
    {
        var deployment = Deploy("kubernetes", "deployment.yaml");
        foreach (var (name, value) in CloudRuntimeSettings.EnvironmentVariables)
            Assert.Contains($"{{ name: {name}, value: \"{value}\" }}", deployment, StringComparison.Ordinal);
    }

    [Fact]
    public void The_description_names_the_gc_mode_of_this_process()
    {
        var expected = System.Runtime.GCSettings.IsServerGC ? "server GC" : "workstation GC";
        Assert.StartsWith(expected, CloudRuntimeSettings.Describe(), StringComparison.Ordinal);
        Assert.Equal("DOTNET_gcServer=1 DOTNET_TC_QuickJit=0", CloudRuntimeSettings.Prefix);
    }
}
