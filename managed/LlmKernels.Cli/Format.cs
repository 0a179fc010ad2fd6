using System.Globalization;

namespace LlmKernels.Cli;

/// <summary>Numbers for people: exact counts with separators plus a short scaled form; binary units for memory
/// sizes (KiB, MiB, GiB), decimal ones for rates (GB/s) and FLOPs.</summary>
internal static class Format
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static string Exact(long value) => value.ToString("N0", Invariant);

    /// <summary>6738415616 -> "6,738,415,616 (6.74 B)".</summary>
    public static string Count(long value) => value < 1000 ? Exact(value) : $"{Exact(value)} ({Scaled(value, 1000, ["", " K", " M", " B", " T"])})";

    /// <summary>524288 -> "524,288 B (512 KiB)".</summary>
    public static string Bytes(double value) =>
        value < 1024 ? $"{value.ToString("N0", Invariant)} B" : $"{value.ToString("N0", Invariant)} B ({Scaled(value, 1024, [" B", " KiB", " MiB", " GiB", " TiB"])})";

    /// <summary>An error in scientific notation: 4.43e-08.</summary>
    public static string Error(double value) => value.ToString("0.00e+00", Invariant);

    /// <summary>1.32e10 -> "13.21 GFLOP".</summary>
    public static string Flops(double value) => Scaled(value, 1000, [" FLOP", " kFLOP", " MFLOP", " GFLOP", " TFLOP", " PFLOP"]);

    private static string Scaled(double value, double step, string[] units)
    {
        int unit = 0;
        while (Math.Abs(value) >= step && unit < units.Length - 1)
        {
            value /= step;
            unit++;
        }
        return value.ToString(unit == 0 ? "0.##" : "0.00", Invariant) + units[unit];
    }
}
