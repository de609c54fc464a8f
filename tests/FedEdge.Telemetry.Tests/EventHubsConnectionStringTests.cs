using FedEdge.Cloud.Telemetry.EventHubs;

namespace FedEdge.Telemetry.Tests;

public sealed class EventHubsConnectionStringTests
{
    [Fact]
    public void Parses_an_Azure_connection_string_with_tls_defaults()
    {
        var parsed = EventHubsConnectionString.Parse(
            "Endpoint=sb://fleet.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc+/def=;EntityPath=drift");

        Assert.Equal("fleet.servicebus.windows.net", parsed.Host);
        Assert.Equal(5671, parsed.Port);
        Assert.True(parsed.UseTls);
        Assert.Equal("send", parsed.SharedAccessKeyName);
        Assert.Equal("abc+/def=", parsed.SharedAccessKey); // '=' inside the value is kept
        Assert.Equal("drift", parsed.EntityPath);
        Assert.DoesNotContain("abc+/def=", parsed.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Emulator_flag_selects_plain_amqp_and_keeps_an_explicit_port()
    {
        var parsed = EventHubsConnectionString.Parse(
            "Endpoint=sb://localhost:5673;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=hub;UseDevelopmentEmulator=true");
        Assert.False(parsed.UseTls);
        Assert.Equal(5673, parsed.Port);

        var defaultPort = EventHubsConnectionString.Parse("Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=hub;UseDevelopmentEmulator=True");
        Assert.Equal(5672, defaultPort.Port);
    }

    [Fact]
    public void Namespace_level_string_takes_the_configured_hub()
    {
        var parsed = EventHubsConnectionString.Parse("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v", "telemetry");
        Assert.Equal("telemetry", parsed.EntityPath);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=h", "Endpoint is missing")]
    [InlineData("Endpoint=http://x/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=h", "Endpoint 'http://x/'")]
    [InlineData("Endpoint=sb://x/;SharedAccessKey=v;EntityPath=h", "SharedAccessKeyName is missing")]
    [InlineData("Endpoint=sb://x/;SharedAccessKeyName=k;EntityPath=h", "SharedAccessKey is missing")]
    [InlineData("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=;EntityPath=h", "SharedAccessKey is missing")]
    [InlineData("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v", "EntityPath")]
    [InlineData("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=h;UseDevelopmentEmulator=yes", "UseDevelopmentEmulator 'yes'")]
    [InlineData("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=h;EntityPath=g", "'EntityPath' appears more than once")]
    [InlineData("Endpoint=sb://x/;garbage;SharedAccessKeyName=k", "'garbage' is not Key=Value")]
    public void Bad_strings_name_the_part_that_is_wrong(string connectionString, string expected)
    {
        var error = Assert.Throws<FormatException>(() => EventHubsConnectionString.Parse(connectionString));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Hub_name_conflicting_with_the_configured_one_is_refused()
    {
        var error = Assert.Throws<FormatException>(() =>
            EventHubsConnectionString.Parse("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=a", "b"));
        Assert.Contains("differs", error.Message, StringComparison.Ordinal);
    }
}
