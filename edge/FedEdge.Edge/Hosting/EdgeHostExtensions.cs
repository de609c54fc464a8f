using FedEdge.Edge.Mqtt;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace FedEdge.Edge.Hosting;

public static class EdgeHostExtensions
{
    /// <summary>
    /// Adds the edge agent: <see cref="EdgeAgentOptions"/> bound from the <c>Edge</c> section and validated at
    /// start-up, the MQTT client factory, the clock and <see cref="EdgeAgentService"/>.
    /// </summary>
    public static IHostApplicationBuilder AddFedEdgeEdge(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<EdgeAgentOptions>()
            .Bind(builder.Configuration.GetSection(EdgeAgentOptions.SectionName))
            .ValidateOnStart();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<EdgeAgentOptions>, EdgeAgentOptionsValidator>());
        builder.Services.TryAddSingleton<IMqttClientFactory, MqttNetClientFactory>();
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<EdgeAgentService>();
        builder.Services.AddHostedService(services => services.GetRequiredService<EdgeAgentService>());
        return builder;
    }
}
