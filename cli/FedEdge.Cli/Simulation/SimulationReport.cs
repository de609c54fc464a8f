using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace FedEdge.Cli.Simulation;

/// <summary>
/// Writes a simulation's record as JSON and as a self-contained HTML page with inline SVG plots: test accuracy, bytes
/// up and down per round, and the convergence diagnostics of algorithms.md §7 (monotonicity-violation fraction and the
/// diameter of the last W global models, whose plateau marks the oscillation region).
/// </summary>
public static class SimulationReport
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
    };

    public static string ToJson(SimulationResult result) => JsonSerializer.Serialize(result, Json);

    public static void WriteJson(SimulationResult result, string path) => File.WriteAllText(path, ToJson(result));

    public static void WriteHtml(SimulationResult result, string path) => File.WriteAllText(path, ToHtml(result));

    /// <summary>The run's one-line description (also the report's title).</summary>
    public static string Describe(SimulationOptions o) =>
        (o.AlgorithmSpec.Name == FedEdge.Protocol.AlgorithmSpec.FedAvg && o.L1 == 0 ? "" : $"{o.AlgorithmSpec}, ") +
        $"{o.Devices} devices{(o.AttackerCount > 0 ? $" ({o.AttackerCount} {o.Attack} attackers)" : ", no attackers")}, {o.Model}, {o.Partition}, " +
        $"{o.Codec}{(o.ErrorFeedback == "none" ? "" : " + " + o.ErrorFeedback)}, " +
        $"{(o.BucketSize > 1 ? $"bucketing s={o.BucketSize} + " : "")}{o.EffectiveRule}{(o.ByzantineCount != o.AttackerCount ? $" (f = {o.ByzantineCount})" : "")}" +
        $"{(o.ServerLearningRate != 1.0 ? string.Create(CultureInfo.InvariantCulture, $" (server lr {o.ServerLearningRate})") : "")}, {o.EffectiveMode.ToString().ToLowerInvariant()}, {o.Rounds} rounds" +
        (o.HeterogeneousDevices ? ", " + DescribeDevices(o) : "");

    /// <summary>The devices' speed settings, e.g. "lognormal(σ = 1) speeds, 1 straggler ×10, 2 offline 30 s once, time scale 0.5".</summary>
    public static string DescribeDevices(SimulationOptions o)
    {
        var parts = new List<string> { o.SpeedSigma > 0 ? Inv($"lognormal(σ = {o.SpeedSigma}) speeds") : "uniform speeds" };
        if (o.StragglerCount > 0) parts.Add(Inv($"{o.StragglerCount} straggler{(o.StragglerCount == 1 ? "" : "s")} ×{o.StragglerSlowdown}"));
        if (o.OfflineCount > 0) parts.Add(Inv($"{o.OfflineCount} offline {o.OfflineSeconds} s once"));
        if (o.TimeScale != 1) parts.Add(Inv($"time scale {o.TimeScale}"));
        return string.Join(", ", parts);
    }

    /// <summary>The first version whose test accuracy reached <paramref name="target"/> (null = none did).</summary>
    public static SimulationRound? FirstReaching(IEnumerable<SimulationRound> rounds, double target)
    {
        ArgumentNullException.ThrowIfNull(rounds);
        return rounds.FirstOrDefault(r => r.TestAccuracy >= target); // NaN (not evaluated) never compares ≥
    }

    /// <summary>Time to accuracy: the <see cref="SimulationRound.ElapsedSeconds"/> of the first version at <paramref name="target"/>, else null.</summary>
    public static double? TimeToAccuracy(IEnumerable<SimulationRound> rounds, double target) => FirstReaching(rounds, target)?.ElapsedSeconds;

    /// <summary>One line on the time to the target accuracy (printed at the end of a run, and in the report).</summary>
    public static string DescribeTimeToTarget(SimulationResult result)
    {
        var target = result.Options.TargetAccuracy;
        if (FirstReaching(result.Rounds, target) is { } reached)
            return Inv($"time to {100 * target:F1} % test accuracy: {reached.ElapsedSeconds:F1} s (v{reached.Round})");
        var best = result.Rounds.Where(r => double.IsFinite(r.TestAccuracy)).MaxBy(r => r.TestAccuracy);
        return Inv($"time to {100 * target:F1} % test accuracy: not reached") + (best is null ? "" : Inv($" (best {100 * best.TestAccuracy:F2} % at v{best.Round}, {best.ElapsedSeconds:F1} s)"));
    }

    public static string ToHtml(SimulationResult result)
    {
        var o = result.Options;
        var html = new StringBuilder();
        var title = "FedEdge simulation: " + Describe(o);
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title)).Append("</title>")
            .Append("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}")
            .Append("figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:13px;color:#444}</style>")
            .Append("</head><body><h1>").Append(WebUtility.HtmlEncode(title)).Append("</h1>");
        html.Append(Inv($"<p>d = {result.ParameterCount:N0} parameters ({result.ModelBytes:N0} model bytes); {result.Rounds.Count} rounds in {result.TotalSeconds:F1} s; ")
            + Inv($"{result.TotalBytesUp:N0} bytes up, {result.TotalBytesDown:N0} bytes down; accuracy {100 * result.InitialAccuracy:F2} % → {100 * FinalAccuracy(result):F2} %; ")
            + Inv($"‖x_last − x̄‖ = {result.LastToAverageGap:G4}; ")
            + $"attackers: {WebUtility.HtmlEncode(result.Attackers.Count == 0 ? "none" : string.Join(", ", result.Attackers))}; {o.Optimizer} lr {o.LearningRate.ToString(CultureInfo.InvariantCulture)}, "
            + Inv($"≤ {o.MaxStepsPerRound} steps × {o.LocalEpochs} epoch(s) per round, seed {o.Seed}.</p>"));
        html.Append("<p>Devices: ").Append(WebUtility.HtmlEncode(DescribeDevices(o)))
            .Append(Inv($" (slowdowns {string.Join(", ", result.Devices.Select(d => d.Slowdown.ToString("F2", CultureInfo.InvariantCulture)))}; {result.Outages} outage(s)). "))
            .Append(WebUtility.HtmlEncode(Capitalized(DescribeTimeToTarget(result)))).Append(".</p>");

        var rounds = result.Rounds;
        var accuracy = new List<(double, double)> { (0, result.InitialAccuracy) };
        accuracy.AddRange(rounds.Where(r => double.IsFinite(r.TestAccuracy)).Select(r => ((double)r.Round, r.TestAccuracy)));
        html.Append(Figure("Test accuracy of the global model (round 0 = initial model)",
            LineChart([new("test accuracy", "#1f77b4", accuracy)], yMin: 0, yMax: 1, yFormat: v => Inv($"{100 * v:F0}%"))));
        var overTime = new List<(double, double)> { (0, result.InitialAccuracy) };
        overTime.AddRange(rounds.Where(r => double.IsFinite(r.TestAccuracy)).Select(r => (r.ElapsedSeconds, r.TestAccuracy)));
        html.Append(Figure(Inv($"Test accuracy over wall-clock time since the agents started (dashed: the {100 * o.TargetAccuracy:F0} % target)"),
            LineChart([new("test accuracy", "#1f77b4", overTime), new("target", "#999999", [(0, o.TargetAccuracy), (overTime.Max(p => p.Item1), o.TargetAccuracy)], Dashed: true)],
                yMin: 0, yMax: 1, yFormat: v => Inv($"{100 * v:F0}%"), xLabel: "seconds")));
        html.Append(Figure("Bytes per round (log scale): updates up, model publications down",
            LineChart([
                new("bytes up", "#d62728", rounds.Select(r => ((double)r.Round, (double)r.BytesUp)).ToList()),
                new("bytes down", "#2ca02c", rounds.Select(r => ((double)r.Round, (double)r.BytesDown)).ToList()),
            ], logY: true, yFormat: FormatBytes)));
        var objective = rounds.Where(r => double.IsFinite(r.Objective)).ToList();
        html.Append(Figure("Objective g(θ) + f(θ) on the devices' training data, and the sparsity of θ (fraction of zero coordinates)",
            LineChart([
                new("objective", "#8c564b", objective.Select(r => ((double)r.Round, r.Objective)).ToList()),
                new("sparsity", "#17becf", objective.Select(r => ((double)r.Round, r.Sparsity)).ToList(), Dashed: true),
            ], yMin: 0, yFormat: v => Inv($"{v:G3}"))));
        html.Append(Figure("Monotonicity violations: fraction of consecutive rounds with ⟨Δθ, ΔF⟩ < 0",
            LineChart([new("violation fraction", "#9467bd", rounds.Select(r => ((double)r.Round, r.MonotonicityViolations)).ToList())],
                yMin: 0, yMax: 1, yFormat: v => Inv($"{v:F1}"))));
        html.Append(Figure(Inv($"Diameter of the last {o.DiagnosticsWindow} global models, max ‖x_s − x_t‖ (a plateau = oscillation region)"),
            LineChart([new("diameter", "#ff7f0e", rounds.Select(r => ((double)r.Round, r.Diameter)).ToList())], yMin: 0, yFormat: v => Inv($"{v:G3}"))));

        html.Append("<table><tr><th>round</th><th>participants</th><th>bytes up</th><th>bytes down</th><th>train loss</th><th>test accuracy</th><th>test loss</th>")
            .Append("<th>objective</th><th>sparsity</th><th>round time (s)</th><th>elapsed (s)</th><th>violation fraction</th><th>diameter</th></tr>");
        foreach (var r in rounds)
            html.Append(Inv($"<tr><td>{r.Round}</td><td>{r.Participants}</td><td>{r.BytesUp:N0}</td><td>{r.BytesDown:N0}</td><td>{(r.MeanTrainLoss is { } l ? l.ToString("F4", CultureInfo.InvariantCulture) : "")}</td>")
                + Inv($"<td>{(double.IsFinite(r.TestAccuracy) ? $"{100 * r.TestAccuracy:F2} %" : "–")}</td><td>{(double.IsFinite(r.TestLoss) ? r.TestLoss.ToString("F4", CultureInfo.InvariantCulture) : "–")}</td>")
                + Inv($"<td>{(double.IsFinite(r.Objective) ? r.Objective.ToString("F4", CultureInfo.InvariantCulture) : "–")}</td><td>{(double.IsFinite(r.Sparsity) ? $"{100 * r.Sparsity:F1} %" : "–")}</td>")
                + Inv($"<td>{r.RoundSeconds:F2}</td><td>{r.ElapsedSeconds:F1}</td><td>{r.MonotonicityViolations:F2}</td><td>{r.Diameter:G4}</td></tr>"));
        html.Append("</table></body></html>\n");
        return html.ToString();
    }

    /// <summary>The last evaluated accuracy (the initial one when no round was evaluated).</summary>
    public static double FinalAccuracy(SimulationResult result) =>
        result.Rounds.LastOrDefault(r => double.IsFinite(r.TestAccuracy))?.TestAccuracy ?? result.InitialAccuracy;

    private sealed record Series(string Name, string Color, IReadOnlyList<(double X, double Y)> Points, bool Dashed = false);

    private static string Figure(string caption, string svg) =>
        "<figure>" + svg + "<figcaption>" + WebUtility.HtmlEncode(caption) + "</figcaption></figure>";

    private static string LineChart(IReadOnlyList<Series> series, double? yMin = null, double? yMax = null, bool logY = false, Func<double, string>? yFormat = null,
        string xLabel = "round")
    {
        const int width = 560, height = 300, left = 64, right = 16, top = 16, bottom = 40;
        yFormat ??= v => v.ToString("G3", CultureInfo.InvariantCulture);
        var points = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.Y) && (!logY || p.Y > 0)).ToList();
        var svg = new StringBuilder();
        svg.Append(Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\">"));
        if (points.Count == 0) return svg.Append("<text x=\"20\" y=\"40\">no data</text></svg>").ToString();
        double Map(double y) => logY ? Math.Log10(y) : y;
        var minX = Math.Min(0, points.Min(p => p.X));
        var maxX = Math.Max(minX + 1, points.Max(p => p.X));
        var lo = yMin is { } a ? Map(a) : points.Min(p => Map(p.Y));
        var hi = yMax is { } b ? Map(b) : points.Max(p => Map(p.Y));
        if (logY) (lo, hi) = (Math.Floor(lo), Math.Ceiling(hi));
        if (hi <= lo) hi = lo + 1;
        double Px(double x) => left + (x - minX) / (maxX - minX) * (width - left - right);
        double Py(double y) => top + (1 - (Map(y) - lo) / (hi - lo)) * (height - top - bottom);
        var ticks = logY ? Enumerable.Range((int)lo, (int)(hi - lo) + 1).Select(e => Math.Pow(10, e))
            : Enumerable.Range(0, 6).Select(k => lo + k * (hi - lo) / 5);
        foreach (var t in ticks)
        {
            var y = Py(t);
            svg.Append(Inv($"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{width - right}\" y2=\"{y:F1}\" stroke=\"#eee\"/>"))
                .Append(Inv($"<text x=\"{left - 6}\" y=\"{y + 4:F1}\" font-size=\"11\" text-anchor=\"end\">")).Append(WebUtility.HtmlEncode(yFormat(t))).Append("</text>");
        }
        var axis = top + height - top - bottom;
        svg.Append(Inv($"<line x1=\"{left}\" y1=\"{axis}\" x2=\"{width - right}\" y2=\"{axis}\" stroke=\"#000\"/>"))
            .Append(Inv($"<text x=\"{(left + width - right) / 2}\" y=\"{height - 8}\" font-size=\"12\" text-anchor=\"middle\">{xLabel}</text>"))
            .Append(Inv($"<text x=\"{left}\" y=\"{axis + 14}\" font-size=\"11\" text-anchor=\"middle\">{minX:F0}</text>"))
            .Append(Inv($"<text x=\"{width - right}\" y=\"{axis + 14}\" font-size=\"11\" text-anchor=\"end\">{maxX:F0}</text>"));
        for (var k = 0; k < series.Count; k++)
        {
            var s = series[k];
            var visible = s.Points.Where(p => double.IsFinite(p.Y) && (!logY || p.Y > 0)).ToList();
            svg.Append(Inv($"<polyline fill=\"none\" stroke=\"{s.Color}\" stroke-width=\"2\"{(s.Dashed ? " stroke-dasharray=\"6 4\"" : "")} points=\""))
                .AppendJoin(' ', visible.Select(p => Inv($"{Px(p.X):F1},{Py(p.Y):F1}"))).Append("\"/>");
            foreach (var p in s.Dashed ? [] : visible) svg.Append(Inv($"<circle cx=\"{Px(p.X):F1}\" cy=\"{Py(p.Y):F1}\" r=\"2.5\" fill=\"{s.Color}\"/>"));
            svg.Append(Inv($"<text x=\"{width - right - 4}\" y=\"{top + 14 + 14 * k}\" font-size=\"12\" text-anchor=\"end\" fill=\"{s.Color}\">")).Append(WebUtility.HtmlEncode(s.Name)).Append("</text>");
        }
        return svg.Append("</svg>").ToString();
    }

    private static string FormatBytes(double v) => v switch
    {
        >= 1e9 => Inv($"{v / 1e9:G3} GB"),
        >= 1e6 => Inv($"{v / 1e6:G3} MB"),
        >= 1e3 => Inv($"{v / 1e3:G3} kB"),
        _ => Inv($"{v:G3} B"),
    };

    private static string Capitalized(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..];

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
