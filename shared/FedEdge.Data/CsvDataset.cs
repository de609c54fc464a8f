using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace FedEdge.Data;

/// <summary>Options for <see cref="CsvDataset.Load"/>.</summary>
public sealed record CsvOptions
{
    /// <summary>Zero-based index of the label column; negative counts from the end (default −1: the last column).</summary>
    public int LabelColumn { get; init; } = -1;

    /// <summary>Column separator.</summary>
    public char Separator { get; init; } = ',';

    /// <summary>Whether the first line is a header; null detects it (a first line with a non-numeric feature field).</summary>
    public bool? HasHeader { get; init; }

    /// <summary>Shape of one sample; null for a flat vector of the feature columns.</summary>
    public int[]? SampleShape { get; init; }
}

/// <summary>
/// Loads a CSV file of numeric feature columns and one label column into a <see cref="Dataset"/> through
/// ML.NET's text loader. Labels that are all non-negative integers are used as class indices; any other
/// label text (class names) is mapped to 0..K−1 in ordinal order of the distinct names.
/// </summary>
public static class CsvDataset
{
    /// <summary>Loads <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">Empty file, ragged rows, or a feature that is not a number.</exception>
    public static Dataset Load(string path, CsvOptions? options = null)
    {
        options ??= new CsvOptions();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"CSV file {path} not found.", path);
        }
        string? first = File.ReadLines(path).FirstOrDefault(l => !string.IsNullOrWhiteSpace(l));
        if (first is null)
        {
            throw new InvalidDataException($"{path}: the CSV file is empty.");
        }
        string[] fields = first.Split(options.Separator);
        int columns = fields.Length;
        if (columns < 2)
        {
            throw new InvalidDataException($"{path}: need at least one feature column and a label column (separator '{options.Separator}').");
        }
        int labelColumn = options.LabelColumn < 0 ? columns + options.LabelColumn : options.LabelColumn;
        if (labelColumn < 0 || labelColumn >= columns)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"Label column {options.LabelColumn} is outside the {columns} columns of {path}.");
        }
        bool hasHeader = options.HasHeader ?? fields.Where((_, i) => i != labelColumn)
            .Any(f => !float.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out _));

        var featureRanges = new List<TextLoader.Range>();
        if (labelColumn > 0)
        {
            featureRanges.Add(new TextLoader.Range(0, labelColumn - 1));
        }
        if (labelColumn < columns - 1)
        {
            featureRanges.Add(new TextLoader.Range(labelColumn + 1, columns - 1));
        }
        var ml = new MLContext(seed: 0);
        var loader = ml.Data.CreateTextLoader(new TextLoader.Options
        {
            Separators = [options.Separator],
            HasHeader = hasHeader,
            AllowQuoting = true,
            TrimWhitespace = true,
            Columns =
            [
                new TextLoader.Column("Features", DataKind.Single, featureRanges.ToArray()),
                new TextLoader.Column("Label", DataKind.String, labelColumn),
            ],
        });
        var view = loader.Load(path);
        int featureCount = columns - 1;

        var features = new List<float>();
        var labelTexts = new List<string>();
        using (var cursor = view.GetRowCursor(view.Schema))
        {
            var featureGetter = cursor.GetGetter<VBuffer<float>>(view.Schema["Features"]);
            var labelGetter = cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema["Label"]);
            VBuffer<float> row = default;
            ReadOnlyMemory<char> label = default;
            long line = hasHeader ? 1 : 0;
            while (cursor.MoveNext())
            {
                line++;
                featureGetter(ref row);
                labelGetter(ref label);
                var values = row.DenseValues().ToArray();
                if (values.Length != featureCount)
                {
                    throw new InvalidDataException($"{path}, data row {line}: expected {featureCount} features, found {values.Length}.");
                }
                for (int i = 0; i < values.Length; i++)
                {
                    if (float.IsNaN(values[i]))
                    {
                        throw new InvalidDataException($"{path}, data row {line}: feature {i + 1} is missing or not a number.");
                    }
                }
                features.AddRange(values);
                labelTexts.Add(label.ToString().Trim());
            }
        }
        if (labelTexts.Count == 0)
        {
            throw new InvalidDataException($"{path}: the CSV file has no data rows.");
        }

        long[] labels = ParseLabels(labelTexts, path, out int classCount);
        int[] shape = options.SampleShape ?? [featureCount];
        return new Dataset(features.ToArray(), labels, shape, classCount);
    }

    private static long[] ParseLabels(List<string> texts, string path, out int classCount)
    {
        var labels = new long[texts.Count];
        bool numeric = true;
        for (int i = 0; i < texts.Count && numeric; i++)
        {
            numeric = long.TryParse(texts[i], NumberStyles.None, CultureInfo.InvariantCulture, out labels[i])
                || (double.TryParse(texts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out double d)
                    && d >= 0 && d == Math.Floor(d) && d < int.MaxValue && (labels[i] = (long)d) >= 0);
        }
        if (numeric)
        {
            classCount = (int)(labels.Max() + 1);
            return labels;
        }
        if (texts.Any(string.IsNullOrEmpty))
        {
            throw new InvalidDataException($"{path}: a row has an empty label.");
        }
        var names = texts.Distinct().Order(StringComparer.Ordinal).ToList();
        var index = names.Select((name, i) => (name, i)).ToDictionary(p => p.name, p => (long)p.i);
        for (int i = 0; i < texts.Count; i++)
        {
            labels[i] = index[texts[i]];
        }
        classCount = names.Count;
        return labels;
    }
}
