using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace FedEdge.Cli.Simulation;

/// <summary>Writes a simulation's record as JSON and as a self-contained HTML page with an inline SVG accuracy plot.</summary>
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

    public static string ToHtml(SimulationResult result)
    {
        var o = result.Options;
        var html = new StringBuilder();
        var title = $"FedEdge simulation: {o.Devices} devices, {o.Model}, {o.Partition}, {o.Codec} + {o.ErrorFeedback}, {o.Aggregator}, attack {o.Attack}";
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title)).Append("</title>")
            .Append("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>")
            .Append("</head><body><h1>").Append(WebUtility.HtmlEncode(title)).Append("</h1>");
        html.Append(Inv($"<p>{result.ParameterCount:N0} parameters, {result.Rounds.Count} rounds in {result.TotalSeconds:F1} s, {result.TotalBytesUp:N0} bytes up; ")
            + $"attackers: {WebUtility.HtmlEncode(result.Attackers.Count == 0 ? "none" : string.Join(", ", result.Attackers))}; mode {o.Mode}, seed {o.Seed}.</p>");
        html.Append(AccuracySvg(result));
        html.Append("<table><tr><th>round</th><th>participants</th><th>bytes up</th><th>train loss</th><th>test accuracy</th><th>round time (s)</th></tr>");
        foreach (var r in result.Rounds)
            html.Append(Inv($"<tr><td>{r.Round}</td><td>{r.Participants}</td><td>{r.BytesUp:N0}</td><td>{(r.MeanTrainLoss is { } l ? l.ToString("F4", CultureInfo.InvariantCulture) : "")}</td><td>{(double.IsFinite(r.TestAccuracy) ? $"{100 * r.TestAccuracy:F2} %" : "–")}</td><td>{r.RoundSeconds:F2}</td></tr>"));
        html.Append("</table></body></html>\n");
        return html.ToString();
    }

    public static void WriteHtml(SimulationResult result, string path) => File.WriteAllText(path, ToHtml(result));

    private static string AccuracySvg(SimulationResult result)
    {
        const int width = 640, height = 320, left = 50, right = 20, top = 20, bottom = 40;
        var points = new List<(double X, double Y)> { (0, result.InitialAccuracy) };
        points.AddRange(result.Rounds.Where(r => double.IsFinite(r.TestAccuracy)).Select(r => ((double)r.Round, r.TestAccuracy)));
        var maxX = Math.Max(1, points.Max(p => p.X));
        double Px(double x) => left + x / maxX * (width - left - right);
        double Py(double y) => top + (1 - y) * (height - top - bottom);
        var svg = new StringBuilder();
        svg.Append(Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"test accuracy per round\">"));
        for (var t = 0; t <= 10; t += 2)
        {
            var y = Py(t / 10.0);
            svg.Append(Inv($"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{width - right}\" y2=\"{y:F1}\" stroke=\"#eee\"/><text x=\"{left - 6}\" y=\"{y + 4:F1}\" font-size=\"11\" text-anchor=\"end\">{t * 10}%</text>"));
        }
        svg.Append(Inv($"<line x1=\"{left}\" y1=\"{Py(0):F1}\" x2=\"{width - right}\" y2=\"{Py(0):F1}\" stroke=\"#000\"/>"));
        svg.Append(Inv($"<text x=\"{(left + width - right) / 2}\" y=\"{height - 8}\" font-size=\"12\" text-anchor=\"middle\">round (0 = initial model)</text>"));
        svg.Append(Inv($"<text x=\"{Px(maxX):F1}\" y=\"{Py(0) + 14:F1}\" font-size=\"11\" text-anchor=\"end\">{maxX:F0}</text>"));
        svg.Append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"")
            .AppendJoin(' ', points.Select(p => Inv($"{Px(p.X):F1},{Py(p.Y):F1}"))).Append("\"/>");
        foreach (var p in points) svg.Append(Inv($"<circle cx=\"{Px(p.X):F1}\" cy=\"{Py(p.Y):F1}\" r=\"3\" fill=\"#1f77b4\"/>"));
        return svg.Append("</svg>").ToString();
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
