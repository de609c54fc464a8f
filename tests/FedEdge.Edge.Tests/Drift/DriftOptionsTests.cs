using FedEdge.Edge.Hosting;
using Microsoft.Extensions.Configuration;

namespace FedEdge.Edge.Tests.Drift;

public sealed class DriftOptionsTests
{
    [Fact]
    public void Drift_settings_bind_from_configuration_and_become_classifier_thresholds()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Edge:Data:WindowDirectory"] = "/data/windows",
            ["Edge:Drift:Enabled"] = "true",
            ["Edge:Drift:MaxStatisticsSamples"] = "256",
            ["Edge:Drift:LabelShift"] = "0.25",
            ["Edge:Drift:FeatureShift"] = "0.5",
            ["Edge:Drift:InputShiftExplainsCentreChange"] = "false",
        }).Build();
        var options = new EdgeAgentOptions();
        configuration.GetSection(EdgeAgentOptions.SectionName).Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        Assert.Equal("/data/windows", options.Data.WindowDirectory);
        Assert.True(options.Drift.Enabled);
        Assert.Equal(256, options.Drift.MaxStatisticsSamples);
        var thresholds = options.Drift.Thresholds();
        Assert.Equal(0.25f, thresholds.LabelShift);
        Assert.Equal(0.5f, thresholds.FeatureShift);
        Assert.False(thresholds.InputShiftExplainsCentreChange);
        Assert.False(new EdgeAgentOptions().Drift.Enabled); // off unless asked for: unclustered devices behave as before
    }

    [Fact]
    public void Bad_drift_settings_are_refused_with_the_setting_named()
    {
        var options = new EdgeAgentOptions
        {
            CredentialsPath = "/nonexistent/device.json",
            Data = new EdgeDataOptions { WindowDirectory = "/nonexistent/windows" },
            Drift = new EdgeDriftOptions { MaxStatisticsSamples = 0, LabelShift = 1.5f, FeatureShift = -1 },
        };
        var result = new EdgeAgentOptionsValidator().Validate(null, options);
        Assert.True(result.Failed);
        Assert.Contains("Edge:Data:WindowDirectory", result.FailureMessage);
        Assert.DoesNotContain("Edge:Data:Source", result.FailureMessage); // a window directory replaces the source
        Assert.Contains("Edge:Drift:MaxStatisticsSamples", result.FailureMessage);
        Assert.Contains("Edge:Drift:LabelShift", result.FailureMessage);
        Assert.Contains("Edge:Drift:FeatureShift", result.FailureMessage);
    }
}
