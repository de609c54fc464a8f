namespace FedEdge.Aggregation;

/// <summary>
/// A bound on the L2 norm of one update, checked before it reaches any rule: an absolute limit and/or a multiple of the
/// median norm of the last <see cref="Window"/> accepted updates (once <see cref="MinimumHistory"/> are known). An honest
/// majority keeps the median honest, so a scaled or absurd update (1e30 per coordinate) is refused whatever the rule.
/// Thread-safe.
/// </summary>
public sealed class UpdateNormBound
{
    /// <summary>Accepted norms the median is taken over.</summary>
    public const int Window = 100;

    /// <summary>Accepted norms needed before the relative bound applies.</summary>
    public const int MinimumHistory = 5;

    private readonly double[] _recent = new double[Window];
    private readonly Lock _lock = new();
    private int _count;
    private int _next;

    /// <param name="maxNorm">Absolute bound; 0 for none.</param>
    /// <param name="maxToMedian">Bound as a multiple of the median accepted norm; 0 for none.</param>
    public UpdateNormBound(double maxNorm, double maxToMedian)
    {
        if (!(maxNorm >= 0) || double.IsInfinity(maxNorm)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "must be ≥ 0 and finite (0: none)");
        if (!(maxToMedian == 0 || maxToMedian >= 1) || double.IsInfinity(maxToMedian)) throw new ArgumentOutOfRangeException(nameof(maxToMedian), maxToMedian, "must be 0 (none) or ≥ 1");
        MaxNorm = maxNorm;
        MaxToMedian = maxToMedian;
    }

    public double MaxNorm { get; }

    public double MaxToMedian { get; }

    /// <summary>Whether any bound is set.</summary>
    public bool IsActive => MaxNorm > 0 || MaxToMedian > 0;

    /// <summary>Why an update of L2 norm <paramref name="norm"/> is refused, or null if it is within the bound.</summary>
    public string? Check(double norm)
    {
        if (!double.IsFinite(norm)) return $"its L2 norm is {norm}";
        if (MaxNorm > 0 && norm > MaxNorm) return $"its L2 norm {norm:G4} is above the bound {MaxNorm:G4}";
        if (MaxToMedian > 0 && Median() is { } median and > 0 && norm > MaxToMedian * median)
            return $"its L2 norm {norm:G4} is above {MaxToMedian:G4} × {median:G4}, the median norm of the recently accepted updates";
        return null;
    }

    /// <summary>Remembers the norm of an accepted update.</summary>
    public void Record(double norm)
    {
        if (!double.IsFinite(norm)) return;
        lock (_lock)
        {
            _recent[_next] = norm;
            _next = (_next + 1) % Window;
            _count = Math.Min(_count + 1, Window);
        }
    }

    /// <summary>The median of the recent accepted norms; null until <see cref="MinimumHistory"/> are known.</summary>
    public double? Median()
    {
        Span<double> sorted = stackalloc double[Window];
        int n;
        lock (_lock)
        {
            n = _count;
            if (n < MinimumHistory) return null;
            _recent.AsSpan(0, n).CopyTo(sorted);
        }
        sorted = sorted[..n];
        sorted.Sort();
        return n % 2 == 1 ? sorted[n / 2] : (sorted[(n / 2) - 1] + sorted[n / 2]) / 2;
    }
}
