using FedEdge.Cloud.Hosting;
using FedEdge.Cloud.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Orleans.Serialization;
using Orleans.Storage;

namespace FedEdge.Cloud.Tests;

/// <summary>The SQLite grain storage over a file, with Orleans' serializer as the cloud configures it (synchronous=NORMAL: tests need no power-loss safety).</summary>
internal static class TestGrainStorage
{
    private static readonly ServiceProvider Services = new ServiceCollection().AddSerializer().BuildServiceProvider();

    public static SqliteGrainStorage Open(string path, string name = CloudHostExtensions.StorageName) =>
        new(name, path, new OrleansGrainStorageSerializer(Services.GetRequiredService<Serializer>()), NullLogger<SqliteGrainStorage>.Instance, synchronousFull: false);
}
