namespace FedEdge.Aggregation.Attacks;

/// <summary>
/// Standard normal CDF Φ and its inverse, to double precision without tables of fitted coefficients:
/// erf by its Maclaurin series for |x| ≤ 3, erfc by its continued fraction (modified Lentz) beyond;
/// Φ⁻¹ by safeguarded Newton steps on Φ(x) − p (Φ' = φ), bracketed by bisection.
/// </summary>
public static class NormalDistribution
{
    private static readonly double InvSqrt2 = 1.0 / Math.Sqrt(2.0);
    private static readonly double InvSqrt2Pi = 1.0 / Math.Sqrt(2.0 * Math.PI);

    /// <summary>φ(x), the standard normal density.</summary>
    public static double Pdf(double x) => InvSqrt2Pi * Math.Exp(-0.5 * x * x);

    /// <summary>Φ(x) = ½·erfc(−x/√2).</summary>
    public static double Cdf(double x) => 0.5 * Erfc(-x * InvSqrt2);

    /// <summary>Φ⁻¹(p) for p ∈ (0, 1).</summary>
    public static double InverseCdf(double p)
    {
        if (!(p > 0 && p < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, "Φ⁻¹ is defined on the open interval (0, 1).");
        }

        double lo = -40, hi = 40, x = 0;
        for (int k = 0; k < 200; k++)
        {
            double error = Cdf(x) - p;
            if (error == 0)
            {
                return x;
            }

            if (error > 0)
            {
                hi = x;
            }
            else
            {
                lo = x;
            }

            double density = Pdf(x);
            double next = density > 0 ? x - (error / density) : double.NaN;
            if (!(next > lo && next < hi))
            {
                next = 0.5 * (lo + hi); // Newton left the bracket: bisect instead.
            }

            if (Math.Abs(next - x) <= 1e-15 * Math.Max(1.0, Math.Abs(x)))
            {
                return next;
            }

            x = next;
        }

        return x;
    }

    /// <summary>erfc(x) = 1 − erf(x).</summary>
    public static double Erfc(double x)
    {
        if (x < 0)
        {
            return 2.0 - Erfc(-x);
        }

        if (x <= 3.0)
        {
            // erf(x) = 2/√π Σ (−1)^k x^(2k+1) / (k!(2k+1)).
            double term = x, sum = x, x2 = x * x;
            for (int k = 1; k < 200; k++)
            {
                term *= -x2 / k;
                double add = term / ((2 * k) + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum))
                {
                    break;
                }
            }

            return 1.0 - (2.0 / Math.Sqrt(Math.PI) * sum);
        }

        // erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))), modified Lentz.
        const double tiny = 1e-300;
        double f = x, c = x, d = 0;
        for (int k = 1; k < 500; k++)
        {
            double a = k * 0.5;
            d = x + (a * d);
            d = Math.Abs(d) < tiny ? tiny : d;
            c = x + (a / c);
            c = Math.Abs(c) < tiny ? tiny : c;
            d = 1.0 / d;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1.0) < 1e-16)
            {
                break;
            }
        }

        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }
}
