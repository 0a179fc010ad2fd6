using System.Reflection;
using LlmKernels.Interop;

namespace LlmKernels.Verification;

/// <summary>Error of an output against its oracle.</summary>
/// <param name="MaxAbs">Largest |actual - expected|.</param>
/// <param name="RelL2">‖actual - expected‖₂ / ‖expected‖₂ (the absolute L2 error when the reference is zero).</param>
/// <param name="NonFinite">Outputs that are NaN or infinite where the oracle is finite (poison left unwritten
/// counts here).</param>
public readonly record struct ErrorStats(double MaxAbs, double RelL2, long NonFinite)
{
    public bool Within(double relL2Bound) => NonFinite == 0 && RelL2 <= relL2Bound && !double.IsNaN(RelL2);

    /// <summary>Combines the errors of several outputs of one kernel call (the worst of each).</summary>
    public static ErrorStats Worst(params ErrorStats[] stats) => new(
        stats.Max(s => s.MaxAbs), stats.Max(s => s.RelL2), stats.Sum(s => s.NonFinite));
}

public static class Errors
{
    /// <summary>Compares a kernel's output with the oracle's.</summary>
    public static ErrorStats Compare(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual)
    {
        if (expected.Length != actual.Length)
            throw new ArgumentException($"oracle gave {expected.Length} values, the kernel {actual.Length}");
        double maxAbs = 0, diff2 = 0, ref2 = 0;
        long nonFinite = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (!double.IsFinite(a) || !double.IsFinite(e))
            {
                // -inf == -inf is agreement (the log-sum-exp of a fully masked row); anything else is a failure.
                if (!(a == e))
                    nonFinite++;
                continue;
            }
            double d = Math.Abs(a - e);
            maxAbs = Math.Max(maxAbs, d);
            diff2 += d * d;
            ref2 += e * e;
        }
        double relL2 = ref2 > 0 ? Math.Sqrt(diff2 / ref2) : Math.Sqrt(diff2);
        return new ErrorStats(maxAbs, relL2, nonFinite);
    }

    /// <summary>Compares exactly (integer outputs: ids, offsets, row maps): every mismatch counts.</summary>
    public static ErrorStats CompareExact(ReadOnlySpan<long> expected, ReadOnlySpan<long> actual)
    {
        if (expected.Length != actual.Length)
            throw new ArgumentException($"oracle gave {expected.Length} values, the kernel {actual.Length}");
        long mismatches = 0;
        for (int i = 0; i < expected.Length; i++)
            if (expected[i] != actual[i])
                mismatches++;
        return new ErrorStats(mismatches, mismatches, mismatches);
    }
}

public static class Tolerance
{
    /// <summary>Default relative-L2 bound for outputs stored in <paramref name="dtype"/> (f32 arithmetic inside).</summary>
    public static double For(LlmkDtype dtype) => dtype switch
    {
        LlmkDtype.F32 => 1e-5,
        LlmkDtype.F16 => 2e-3,
        LlmkDtype.Bf16 => 1e-2,
        _ => 0,
    };
}

/// <summary>The outcome of one check.</summary>
public sealed record CheckResult(string Kernel, string Case, LlmkDtype DType, ErrorStats Errors, double Tolerance, bool Passed)
{
    public static CheckResult Of(KernelCheck check, ErrorStats errors, double? tolerance = null)
    {
        double bound = tolerance ?? Verification.Tolerance.For(check.DType);
        return new CheckResult(check.Kernel, check.Case, check.DType, errors, bound, errors.Within(bound));
    }
}

/// <summary>One kernel on one case: runs it on fresh random inputs of the given seed, and the oracle on the same
/// inputs (as the kernel saw them, after rounding to the dtype).</summary>
public abstract class KernelCheck
{
    protected KernelCheck(string kernel, string @case, LlmkDtype dtype)
    {
        Kernel = kernel;
        Case = @case;
        DType = dtype;
    }

    public string Kernel { get; }
    public string Case { get; }
    public LlmkDtype DType { get; }

    public abstract CheckResult Run(Context context, int seed);

    public override string ToString() => $"{Kernel} {Case} {DType}";
}

/// <summary>A check from a delegate, for families whose cases are plain functions.</summary>
public sealed class DelegateCheck(string kernel, string @case, LlmkDtype dtype, Func<KernelCheck, Context, Random, CheckResult> run)
    : KernelCheck(kernel, @case, dtype)
{
    public override CheckResult Run(Context context, int seed) => run(this, context, new Random(seed));
}

public static partial class Checks
{
    /// <summary>Every family's checks: each static method of this class that returns IEnumerable&lt;KernelCheck&gt;
    /// (AttentionChecks, RopeChecks, ...), in name order.</summary>
    public static IEnumerable<KernelCheck> All() =>
        typeof(Checks).GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)
            .Where(m => m.ReturnType == typeof(IEnumerable<KernelCheck>) && m.GetParameters().Length == 0 && m.Name != nameof(All))
            .OrderBy(m => m.Name, StringComparer.Ordinal)
            .SelectMany(m => (IEnumerable<KernelCheck>)m.Invoke(null, null)!);
}

public static class RandomData
{
    /// <summary>Uniform values in [-scale, scale].</summary>
    public static float[] Floats(Random rng, int count, float scale = 1)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return values;
    }

    /// <summary>Uniform integers in [minInclusive, maxExclusive).</summary>
    public static int[] Ints(Random rng, int count, int minInclusive, int maxExclusive)
    {
        var values = new int[count];
        for (int i = 0; i < count; i++)
            values[i] = rng.Next(minInclusive, maxExclusive);
        return values;
    }

    /// <summary>Values as a kernel reading them in <paramref name="dtype"/> sees them.</summary>
    public static double[] ToDoubles(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
            result[i] = values[i];
        return result;
    }
}
