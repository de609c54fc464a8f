using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using FedEdge.Drift;
using FedEdge.Drift.Scenarios;

namespace FedEdge.Cli.Scenarios;

/// <summary>Terminal table, JSON record and self-contained HTML page (inline SVG accuracy plot) of a drift scenario run.</summary>
public static class DriftScenarioReport
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    private static readonly string[] Colours = ["#d62728", "#ff7f0e", "#1f77b4", "#2ca02c"];

    public static string ToJson(ScenarioResult result) => JsonSerializer.Serialize(new
    {
        result.Scenario,
        result.Seconds,
        MeanAccuracy = result.Methods.ToDictionary(m => m, result.MeanAccuracy),
        Detection = result.Detection.Select(Score),
        Steps = result.Steps.Select(s => new
        {
            s.TimeStep,
            s.Accuracy,
            s.FedDaaClusters,
            s.FedDaaBestK,
            s.Silhouettes,
            Detection = s.Detection.Select(Score),
            s.Seconds,
            s.Devices,
        }),
    }, Json);

    private static object Score(DetectionScore d) => new { d.Class, d.TruePositives, d.FalsePositives, d.FalseNegatives, d.Precision, d.Recall };

    public static string Header(IReadOnlyList<string> methods) =>
        $"{"step",4} " + string.Join(" ", methods.Select(m => $"{m,8}")) + $" {"k",3}  {"real P/R",11} {"virtual P/R",11} {"label P/R",11} {"s",6}";

    public static string Row(ScenarioStep s) =>
        Inv($"{s.TimeStep,4} ") + string.Join(" ", s.Accuracy.Values.Select(a => Inv($"{100 * a,7:F2}%"))) + Inv($" {s.FedDaaClusters,3}  ") +
        string.Join(" ", s.Detection.Select(PrecisionRecall)) + Inv($" {s.Seconds,6:F1}");

    public static string Summary(ScenarioResult result)
    {
        var sb = new StringBuilder();
        sb.Append("mean ").Append(string.Join(" ", result.Methods.Select(m => Inv($"{100 * result.MeanAccuracy(m),7:F2}%"))));
        sb.Append("       ").Append(string.Join(" ", result.Detection.Select(PrecisionRecall)));
        sb.AppendLine().Append(Inv($"done in {result.Seconds:F1} s; FedDAA − FedAvg = {100 * (result.MeanAccuracy("FedDAA") - result.MeanAccuracy("FedAvg")):+0.00;-0.00} points, "));
        sb.Append(Inv($"FedDAA − IFCA = {100 * (result.MeanAccuracy("FedDAA") - result.MeanAccuracy("IFCA")):+0.00;-0.00} points"));
        return sb.ToString();
    }

    private static string PrecisionRecall(DetectionScore d) => Inv($"{Fmt(d.Precision),5}/{Fmt(d.Recall),-5}");

    private static string Fmt(double v) => double.IsNaN(v) ? "-" : v.ToString("F2", CultureInfo.InvariantCulture);

    public static string ToHtml(ScenarioResult result)
    {
        var s = result.Scenario;
        var title = $"FedEdge drift scenario {s.Name}";
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title)).Append("</title>")
            .Append("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>")
            .Append("</head><body><h1>").Append(WebUtility.HtmlEncode(title)).Append("</h1>");
        html.Append("<p>").Append(WebUtility.HtmlEncode(Inv(
            $"{s.Devices} devices, {s.TimeSteps} steps × {s.RoundsPerStep} rounds, sampling {s.SampleRate}, {s.Model}, SGD lr {s.LearningRate}, batch {s.BatchSize}, {s.LocalEpochs} local epoch(s), {s.TrainSamples}/{s.TestSamples} train/test samples per device and step; drifts: {string.Join(", ", s.DriftKinds)}; IFCA k = {s.IfcaClusters}; seed {s.Seed}; {result.Seconds:F0} s. In-process research harness (training engine + aggregation library, no MQTT)."))).Append("</p>");
        html.Append(AccuracySvg(result));
        html.Append("<h2>Per time step</h2><table><tr><th>step</th>");
        foreach (var m in result.Methods)
        {
            html.Append("<th>").Append(m).Append(" acc</th>");
        }

        html.Append("<th>FedDAA k</th><th>best k</th><th>real P/R</th><th>virtual P/R</th><th>label P/R</th></tr>");
        foreach (var step in result.Steps)
        {
            html.Append(Inv($"<tr><td>{step.TimeStep}</td>"));
            foreach (var a in step.Accuracy.Values)
            {
                html.Append(Inv($"<td>{100 * a:F2} %</td>"));
            }

            html.Append(Inv($"<td>{step.FedDaaClusters}</td><td>{step.FedDaaBestK}</td>"));
            foreach (var d in step.Detection)
            {
                html.Append("<td>").Append(PrecisionRecall(d)).Append("</td>");
            }

            html.Append("</tr>");
        }

        html.Append("<tr><th>mean</th>");
        foreach (var m in result.Methods)
        {
            html.Append(Inv($"<th>{100 * result.MeanAccuracy(m):F2} %</th>"));
        }

        html.Append("<th></th><th></th>");
        foreach (var d in result.Detection)
        {
            html.Append("<th>").Append(PrecisionRecall(d)).Append("</th>");
        }

        return html.Append("</tr></table></body></html>").ToString();
    }

    private static string AccuracySvg(ScenarioResult result)
    {
        const int width = 640, height = 320, left = 50, right = 110, top = 20, bottom = 40;
        var steps = result.Steps.Count;
        double Px(double x) => left + (width - left - right) * (steps <= 1 ? 0 : x / (steps - 1));
        double Py(double y) => height - bottom - (height - top - bottom) * y;
        var svg = new StringBuilder();
        svg.Append(Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"accuracy per time step\">"));
        for (var t = 0; t <= 10; t += 2)
        {
            svg.Append(Inv($"<line x1=\"{left}\" y1=\"{Py(t / 10.0):F1}\" x2=\"{width - right}\" y2=\"{Py(t / 10.0):F1}\" stroke=\"#eee\"/><text x=\"{left - 6}\" y=\"{Py(t / 10.0) + 4:F1}\" font-size=\"11\" text-anchor=\"end\">{t * 10}%</text>"));
        }

        for (var t = 0; t < steps; t++)
        {
            svg.Append(Inv($"<text x=\"{Px(t):F1}\" y=\"{height - bottom + 16}\" font-size=\"11\" text-anchor=\"middle\">{t}</text>"));
        }

        svg.Append(Inv($"<text x=\"{(left + width - right) / 2}\" y=\"{height - 6}\" font-size=\"12\" text-anchor=\"middle\">time step</text>"));
        var i = 0;
        foreach (var m in result.Methods)
        {
            var colour = Colours[i % Colours.Length];
            svg.Append(Inv($"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\""))
                .Append(string.Join(" ", result.Steps.Select(st => Inv($"{Px(st.TimeStep):F1},{Py(st.Accuracy[m]):F1}")))).Append("\"/>");
            svg.Append(Inv($"<text x=\"{width - right + 8}\" y=\"{top + 16 * (i + 1)}\" font-size=\"12\" fill=\"{colour}\">{m}</text>"));
            i++;
        }

        return svg.Append("</svg>").ToString();
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}

/// <summary>`fededge sim --scenario NAME`: runs a drift scenario preset with a progress line per round and a table row per step.</summary>
public static class DriftScenarioCommand
{
    public static int Run(string name, int seed, string? json, string? html, string? dataDirectory, CancellationToken cancellationToken)
    {
        DriftScenario scenario;
        try
        {
            scenario = DriftScenario.Preset(name) with { Seed = seed, Threads = Math.Max(1, Environment.ProcessorCount) };
            scenario.Validate();
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"fededge sim: {e.Message}");
            return 2;
        }

        Console.WriteLine(FormattableString.Invariant(
            $"fededge sim --scenario {name}: {scenario.Devices} devices, {scenario.TimeSteps} steps × {scenario.RoundsPerStep} rounds, {scenario.Model}, drifts {string.Join("+", scenario.DriftKinds)} (in-process harness, no MQTT)"));
        var data = ScenarioData.LoadFashionMnist(scenario, dataDirectory);
        var interactive = !Console.IsOutputRedirected;
        string[] methods = ["FedAvg", "IFCA", "FedDAA"];
        Console.WriteLine(DriftScenarioReport.Header(methods));
        var completed = new List<ScenarioStep>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = ScenarioRunner.Run(scenario, data,
            p =>
            {
                var line = FormattableString.Invariant($"  t={p.TimeStep} round {p.Round + 1}/{scenario.RoundsPerStep}: train loss ") +
                    string.Join(", ", p.TrainLoss.Select(kv => FormattableString.Invariant($"{kv.Key} {kv.Value:F3}"))) +
                    FormattableString.Invariant($"; FedDAA models {p.FedDaaModels}; {p.Seconds:F0} s");
                if (interactive)
                {
                    Console.Write("\r" + line.PadRight(Math.Min(Console.WindowWidth - 1, 140)));
                }
                else if (p.Round == scenario.RoundsPerStep - 1 || p.Round % 10 == 0)
                {
                    Console.Error.WriteLine(line);
                }
            },
            step =>
            {
                // Keep a usable record while a long run is still going: the JSON is rewritten after every step.
                completed.Add(step);
                if (json is not null)
                {
                    var pairs = completed.SelectMany(x => x.Devices).Select(x => (x.Truth, x.Predicted));
                    File.WriteAllText(json, DriftScenarioReport.ToJson(new ScenarioResult(scenario, completed, DetectionScore.Score(pairs), clock.Elapsed.TotalSeconds)));
                }

                if (interactive)
                {
                    Console.Write("\r" + new string(' ', Math.Min(Console.WindowWidth - 1, 140)) + "\r");
                }

                Console.WriteLine(DriftScenarioReport.Row(step));
            },
            cancellationToken);
        Console.WriteLine(DriftScenarioReport.Summary(result));
        if (json is not null)
        {
            File.WriteAllText(json, DriftScenarioReport.ToJson(result));
        }

        if (html is not null)
        {
            File.WriteAllText(html, DriftScenarioReport.ToHtml(result));
        }

        return 0;
    }
}
