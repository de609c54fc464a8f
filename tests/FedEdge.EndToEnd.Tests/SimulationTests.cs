using System.Text.Json;
using FedEdge.Cli.Simulation;

namespace FedEdge.EndToEnd.Tests;

/// <summary>`fededge sim` end to end: cloud + broker + in-process agents over loopback MQTT on Fashion-MNIST.</summary>
public sealed class SimulationTests
{
    private static readonly bool HaveFashionMnist = Directory.Exists(FedEdge.Data.FashionMnist.DefaultDirectory);

    [Fact]
    public async Task TinySimulationLearnsAndRecordsEveryRound()
    {
        Assert.True(HaveFashionMnist, $"Fashion-MNIST is missing at {FedEdge.Data.FashionMnist.DefaultDirectory} (Debian package dataset-fashion-mnist).");
        var options = new SimulationOptions
        {
            Devices = 3,
            Rounds = 2,
            Model = "logreg",
            Partition = "iid",
            Codec = "sign",
            ErrorFeedback = "ef14",
            Aggregator = "mean",
            Attack = "none",
            MaxStepsPerRound = 100,
            EvaluationSamples = 2000,
            Seed = 1,
            RoundTimeout = TimeSpan.FromMinutes(1),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var seen = new List<SimulationRound>();
        var result = await SimulationRunner.RunAsync(options, seen.Add, cancellationToken: timeout.Token);

        Assert.Equal(2, result.Rounds.Count);
        Assert.Equal(seen, result.Rounds);
        Assert.Equal([1L, 2L], result.Rounds.Select(r => r.Round));
        Assert.All(result.Rounds, r => Assert.Equal(3, r.Participants));
        // Sign codec: about d/8 bytes per update (d = 7,850 for logreg), far below fp32's 4d.
        Assert.All(result.Rounds, r => Assert.InRange(r.BytesUp, 3 * 7850 / 8, 3 * 7850 / 4));
        // Down: the fp32 model (≥ 4d bytes) to each of the 3 devices.
        Assert.All(result.Rounds, r => Assert.Equal(3L * result.ModelBytes, r.BytesDown));
        Assert.True(result.ModelBytes >= 4 * 7850);
        Assert.True(result.Rounds[^1].TestAccuracy > 0.3, $"accuracy {result.Rounds[^1].TestAccuracy:P1} is not above chance");
        Assert.True(result.Rounds[^1].TestAccuracy > result.InitialAccuracy);
        // The global model moved, so the window of models has a positive diameter.
        Assert.True(result.Rounds[^1].Diameter > 0);
        Assert.InRange(result.Rounds[^1].MonotonicityViolations, 0, 1);

        using var json = JsonDocument.Parse(SimulationReport.ToJson(result));
        Assert.Equal(2, json.RootElement.GetProperty("rounds").GetArrayLength());
        Assert.Equal(3, json.RootElement.GetProperty("options").GetProperty("devices").GetInt32());
        Assert.True(json.RootElement.GetProperty("rounds")[0].GetProperty("bytesDown").GetInt64() > 0);
        var html = SimulationReport.ToHtml(result);
        Assert.Equal(6, html.Split("<svg").Length - 1); // accuracy per round and over time, bytes, objective, violations, diameter
        Assert.All(result.Rounds, r => Assert.InRange(r.Objective, 0.1, 2.31)); // mean cross-entropy on 10 classes, below ln 10 once trained
        Assert.True(json.RootElement.GetProperty("rounds")[0].GetProperty("objective").GetDouble() > 0);
        Assert.Contains("bytes down", html);
        Assert.Contains("Monotonicity", html);
    }

    /// <summary>
    /// FedMM over MQTT: the first version bootstraps Ŝ, every later one moves Ŝ by the devices' compressed statistics;
    /// the published model carries Ŝ (bytes down above the model's), the objective g + f falls from version to version
    /// and the L1 map leaves exact zeros in θ.
    /// </summary>
    [Fact]
    public async Task FedMMAggregatesSurrogateStatisticsAndLowersTheObjective()
    {
        Assert.True(HaveFashionMnist, $"Fashion-MNIST is missing at {FedEdge.Data.FashionMnist.DefaultDirectory} (Debian package dataset-fashion-mnist).");
        var options = new SimulationOptions
        {
            Algorithm = "fedmm",
            L1 = 0.001,
            Devices = 4,
            Rounds = 4,
            Model = "logreg",
            Partition = "dirichlet:0.1",
            Codec = "fp16",
            ErrorFeedback = "none",
            Attack = "none",
            EvaluationSamples = 1000,
            ObjectiveSamples = 10000,
            Seed = 2,
            RoundTimeout = TimeSpan.FromMinutes(1),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var result = await SimulationRunner.RunAsync(options, cancellationToken: timeout.Token);

        Assert.StartsWith("fedmm(logistic-diagonal", result.Strategy);
        Assert.Equal(4, result.Rounds.Count);
        Assert.All(result.Rounds, r => Assert.Equal(4, r.Participants));
        // The bootstrap answers S_i exactly (fp32: 4 bytes per coordinate of m = d + p + 1 = 8,635); then fp16 statistics.
        Assert.InRange(result.Rounds[0].BytesUp, 4 * 4 * 8635, 4 * 5 * 8635);
        Assert.All(result.Rounds.Skip(1), r => Assert.InRange(r.BytesUp, 4 * 2 * 8635, 4 * 3 * 8635));
        // Down: the model and Ŝ (m fp32 values) to each device; v1 (the bootstrap) is the first to carry Ŝ.
        Assert.All(result.Rounds, r => Assert.Equal(4L * (result.ModelBytes + (4 * 8635)), r.BytesDown));
        var objectives = result.Rounds.Select(r => r.Objective).ToArray();
        for (var v = 1; v < objectives.Length; v++)
            Assert.True(objectives[v] < objectives[v - 1], $"objective {objectives[v - 1]:F4} -> {objectives[v]:F4} at v{v + 1}");
        Assert.True(result.Rounds[^1].Sparsity > 0, "the L1 map leaves zeros");
        Assert.True(result.Rounds[^1].TestAccuracy > result.InitialAccuracy + 0.1);
    }

    /// <summary>
    /// FAR-SIGN over MQTT: every answer message (K bits) is a version; devices answer the directions of the version they
    /// hold, regenerated from its work seed; the model learns from one bit per direction.
    /// </summary>
    [Fact]
    public async Task FarSignLearnsFromSignedDirectionalDerivatives()
    {
        Assert.True(HaveFashionMnist, $"Fashion-MNIST is missing at {FedEdge.Data.FashionMnist.DefaultDirectory} (Debian package dataset-fashion-mnist).");
        var options = new SimulationOptions
        {
            Algorithm = "far-sign",
            Directions = 1024,
            Devices = 4,
            Rounds = 40,
            Model = "logreg",
            Partition = "iid",
            ErrorFeedback = "none",
            Attack = "none",
            EvaluationSamples = 1000,
            Seed = 3,
            RoundTimeout = TimeSpan.FromMinutes(1),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var result = await SimulationRunner.RunAsync(options, cancellationToken: timeout.Token);

        Assert.StartsWith("far-sign(order = first, K ≤ 1024", result.Strategy);
        Assert.Equal(40, result.Rounds.Count);
        Assert.All(result.Rounds, r => Assert.Equal(1, r.Participants));
        // One answer message per version: 1,024 bits (128 bytes) in the scaled-sign payload, a signed envelope around it.
        Assert.All(result.Rounds, r => Assert.InRange(r.BytesUp, 128, 400));
        Assert.True(SimulationReport.FinalAccuracy(result) > result.InitialAccuracy + 0.15,
            $"accuracy {result.InitialAccuracy:P1} -> {SimulationReport.FinalAccuracy(result):P1}");
    }

    [Fact]
    public async Task SignFlipAttackersAreChosenAndTheRunCompletes()
    {
        Assert.True(HaveFashionMnist);
        var options = new SimulationOptions
        {
            Devices = 4,
            Rounds = 1,
            Model = "logreg",
            Partition = "iid",
            Codec = "fp16",
            ErrorFeedback = "none",
            Aggregator = "median",
            Attack = "sign-flip",
            Attackers = 0.25,
            MaxStepsPerRound = 50,
            EvaluationSamples = 1000,
            Seed = 2,
            RoundTimeout = TimeSpan.FromMinutes(1),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var result = await SimulationRunner.RunAsync(options, cancellationToken: timeout.Token);
        Assert.Single(result.Attackers);
        Assert.Single(result.Rounds);
        Assert.Equal(4, result.Rounds[0].Participants);
        Assert.True(result.Rounds[0].TestAccuracy > 0.3);
    }

    /// <summary>
    /// A robust asynchronous federation: what the run names is what the cloud ran (FedBuff with the trimmed mean, not a
    /// plain mean), and a Gaussian attacker in every buffer does not stop it from learning.
    /// </summary>
    [Fact]
    public async Task RobustFedBuffRunsTheConfiguredRuleAndLearnsUnderAGaussianAttacker()
    {
        Assert.True(HaveFashionMnist);
        var options = new SimulationOptions
        {
            Devices = 5,
            Rounds = 3,
            Model = "logreg",
            Partition = "iid",
            Codec = "fp16",
            ErrorFeedback = "none",
            Aggregator = "trimmed-mean",
            Mode = "fedbuff",
            BufferSize = 5,
            Attack = "gaussian",
            Attackers = 0.2,
            MaxStepsPerRound = 30,
            EvaluationSamples = 1000,
            Seed = 3,
            RoundTimeout = TimeSpan.FromMinutes(1),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var result = await SimulationRunner.RunAsync(options, cancellationToken: timeout.Token);
        Assert.StartsWith("fedbuff(K = 5", result.Strategy);
        Assert.Contains("trimmed-mean(f≤1)", result.Strategy);
        Assert.Equal(3, result.Rounds.Count);
        Assert.True(result.Rounds[^1].TestAccuracy > 0.5, $"accuracy {result.Rounds[^1].TestAccuracy:P1} after 3 versions");
    }

    [Fact]
    public async Task AlieAttackersColludeOnTheHonestUpdatesOfEachRound()
    {
        Assert.True(HaveFashionMnist);
        var options = new SimulationOptions
        {
            Devices = 5,
            Rounds = 2,
            Model = "logreg",
            Partition = "iid",
            Codec = "sign",
            ErrorFeedback = "ef14",
            Aggregator = "trimmed-mean",
            Attack = "alie",
            Attackers = 0.2,
            MaxStepsPerRound = 30,
            EvaluationSamples = 1000,
            Seed = 3,
            RoundTimeout = TimeSpan.FromMinutes(1),
            CollusionWait = TimeSpan.FromSeconds(45),
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var result = await SimulationRunner.RunAsync(options, cancellationToken: timeout.Token);
        Assert.Single(result.Attackers);
        Assert.Equal(2, result.Rounds.Count);
        Assert.All(result.Rounds, r => Assert.Equal(5, r.Participants));
        // The attacker forged from all 4 honest updates in both rounds, never from a partial set.
        Assert.Equal(0, result.CollusionShortWaits);
        Assert.True(result.Rounds[^1].TestAccuracy > 0.3, $"accuracy {result.Rounds[^1].TestAccuracy:P1}");
    }

    [Fact]
    public async Task SimulationRunsOverAnExternalMosquittoWithTheGeneratedCredentials()
    {
        Assert.True(HaveFashionMnist);
        Assert.True(MosquittoServer.IsInstalled, MosquittoServer.InstallHint);
        var port = TestPorts.Reserve();
        var options = SmallBrokerRun(seed: 4) with { Broker = $"mqtt://127.0.0.1:{port}" };
        MosquittoServer? broker = null;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        try
        {
            var result = await SimulationRunner.RunAsync(options, brokerAccess: async (files, ct) =>
            {
                // Mosquitto reads the registry's credentials and ACL that the simulation exported.
                Assert.Contains("sim-000:", await File.ReadAllTextAsync(files.PasswordFile, ct));
                Assert.Contains("user sim-002", await File.ReadAllTextAsync(files.AclFile, ct));
                broker = await MosquittoServer.StartAsync(new MosquittoOptions { Directory = Path.GetDirectoryName(files.PasswordFile)!, Port = port, PasswordFile = files.PasswordFile, AclFile = files.AclFile }, ct);
            }, cancellationToken: timeout.Token);
            Assert.NotNull(broker);
            AssertTwoRoundsOfAllThree(result);
        }
        finally
        {
            broker?.Dispose();
        }
    }

    [Fact]
    public async Task SimulationRunsOverAnExternalMosquittoWithTls_TheCloudAndTheAgentsPinningTheCa()
    {
        Assert.True(HaveFashionMnist);
        Assert.True(MosquittoServer.IsInstalled, MosquittoServer.InstallHint);
        var port = TestPorts.Reserve();
        var certificateDirectory = Path.Combine(Path.GetTempPath(), "fededge-e2e-certs-" + Guid.NewGuid().ToString("N"));
        // What `fededge certs ca` and `fededge certs server --san localhost --san 127.0.0.1` write.
        var certificates = new FedEdge.Protocol.Tls.CertificateDirectory(certificateDirectory);
        certificates.CreateAuthority("e2e CA", TimeSpan.FromDays(1), TimeProvider.System.GetUtcNow());
        certificates.IssueServer("broker", ["localhost", "127.0.0.1"], TimeSpan.FromDays(1), TimeProvider.System.GetUtcNow());
        var options = SmallBrokerRun(seed: 4) with { Broker = $"mqtts://localhost:{port}", BrokerCaFile = certificates.AuthorityCertificate };
        MosquittoServer? broker = null;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        try
        {
            var result = await SimulationRunner.RunAsync(options, brokerAccess: async (files, ct) =>
                broker = await MosquittoServer.StartAsync(new MosquittoOptions
                {
                    Directory = Path.GetDirectoryName(files.PasswordFile)!,
                    PasswordFile = files.PasswordFile,
                    AclFile = files.AclFile,
                    Tls = new MosquittoTls(certificates.AuthorityCertificate, certificates.Certificate("broker"), certificates.Key("broker")),
                    TlsPort = port,
                    PlainListener = false,
                }, ct), cancellationToken: timeout.Token);
            Assert.NotNull(broker);
            // Mosquitto's only listener is TLS: the cloud's and the 3 agents' connections all went through it.
            AssertTwoRoundsOfAllThree(result);
        }
        finally
        {
            broker?.Dispose();
            Directory.Delete(certificateDirectory, recursive: true);
        }
    }

    [Fact]
    public async Task SimulationRunsOverTheEmbeddedBrokersTlsListener_TheAgentsPinningTheCa()
    {
        Assert.True(HaveFashionMnist);
        var statuses = new List<string>();
        var options = SmallBrokerRun(seed: 5) with { EmbeddedBrokerTls = true };
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var result = await SimulationRunner.RunAsync(options, onStatus: statuses.Add, cancellationToken: timeout.Token);
        Assert.Contains(statuses, s => s.Contains("(broker mqtts://localhost:", StringComparison.Ordinal));
        AssertTwoRoundsOfAllThree(result);
    }

    /// <summary>Three devices, two rounds of logistic regression on IID shares: the federation every broker test runs.</summary>
    private static SimulationOptions SmallBrokerRun(int seed) => new()
    {
        Devices = 3,
        Rounds = 2,
        Model = "logreg",
        Partition = "iid",
        Codec = "sign",
        ErrorFeedback = "ef14",
        Aggregator = "mean",
        Attack = "none",
        MaxStepsPerRound = 30,
        EvaluationSamples = 1000,
        Seed = seed,
        RoundTimeout = TimeSpan.FromSeconds(40),
    };

    private static void AssertTwoRoundsOfAllThree(SimulationResult result)
    {
        Assert.Equal([1L, 2L], result.Rounds.Select(r => r.Round));
        Assert.All(result.Rounds, r => Assert.Equal(3, r.Participants));
        Assert.True(result.Rounds[^1].TestAccuracy > result.InitialAccuracy);
    }
}
