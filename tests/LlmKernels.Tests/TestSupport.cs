using System.Runtime.InteropServices;

namespace LlmKernels.Tests;

/// <summary>What every test file shares: the run's seed, contexts, and the assertion that a native call failed
/// with a given status and a message naming the culprit.</summary>
public static class TestSupport
{
    /// <summary>The seed of this run: LLMK_TEST_SEED if set, otherwise fresh, and always logged so a failure
    /// can be replayed.</summary>
    public static readonly int Seed = Environment.GetEnvironmentVariable("LLMK_TEST_SEED") is { } s && int.TryParse(s, out var v)
        ? v
        : Random.Shared.Next();

    static TestSupport() => TestContext.Progress.WriteLine($"LlmKernels tests: seed {Seed} (set LLMK_TEST_SEED={Seed} to replay)");

    /// <summary>A seed per test, derived from the run's seed and the test's name, logged with the test.</summary>
    public static int SeedFor(string name)
    {
        int seed = unchecked(Seed * 31 + StableHash(name));
        TestContext.Out.WriteLine($"seed {seed} (run seed {Seed})");
        return seed;
    }

    public static Random Rng([System.Runtime.CompilerServices.CallerMemberName] string name = "") => new(SeedFor(name));

    /// <summary>Every CPU flavour: the reference and each fast one (whether or not this CPU runs it).</summary>
    public static readonly LlmkCpuKernels[] CpuFlavours =
        [LlmkCpuKernels.Reference, LlmkCpuKernels.Portable, LlmkCpuKernels.Avx2, LlmkCpuKernels.Avx512];

    /// <summary>A CPU context of <paramref name="kernels"/>, or the test is ignored with the reason this CPU cannot
    /// run them (never reported as passed).</summary>
    public static Context CpuOrIgnore(LlmkCpuKernels kernels, int threads = 0)
    {
        if (!Context.CpuKernelsAvailable(kernels, out var reason))
            Assert.Ignore(reason!);
        return Context.CreateCpu(threads, kernels);
    }

    /// <summary>A CUDA context, or the test is ignored with the reason (never reported as passed).</summary>
    public static Context CudaOrIgnore()
    {
        var ctx = Context.TryCreateCuda(out var reason);
        if (ctx is null)
            Assert.Ignore($"no usable CUDA device: {reason}");
        return ctx!;
    }

    /// <summary>Asserts that <paramref name="call"/> throws LlmkException with <paramref name="status"/>, and that the
    /// message contains each of <paramref name="mentions"/> (the function and the parameter at fault).</summary>
    public static LlmkException ExpectStatus(LlmkStatus status, TestDelegate call, params string[] mentions)
    {
        var e = Assert.Throws<LlmkException>(call)!;
        Assert.Multiple(() =>
        {
            Assert.That(e.Status, Is.EqualTo(status), e.Message);
            foreach (var m in mentions)
                Assert.That(e.Message, Does.Contain(m));
        });
        return e;
    }

    /// <summary>Runs a check and asserts it passed, logging its errors.</summary>
    public static void AssertPasses(KernelCheck check, Context ctx, int? seed = null)
    {
        int s = seed ?? SeedFor(check.ToString());
        var result = check.Run(ctx, s);
        TestContext.Out.WriteLine($"{result.Kernel} {result.Case} {result.DType}: max abs {result.Errors.MaxAbs:E2}, rel L2 {result.Errors.RelL2:E2} (bound {result.Tolerance:E1}), non-finite {result.Errors.NonFinite}");
        Assert.That(result.Passed, Is.True,
            $"{check}: rel L2 {result.Errors.RelL2:E3} > {result.Tolerance:E1} or {result.Errors.NonFinite} non-finite outputs (max abs {result.Errors.MaxAbs:E3}, seed {s})");
    }

    private static int StableHash(string text)
    {
        unchecked
        {
            int h = (int)2166136261;
            foreach (char c in text)
                h = (h ^ c) * 16777619;
            return h;
        }
    }

    /// <summary>Makes a FIFO at path (Linux); a reader that opens it blocks until a writer comes, which none does.</summary>
    public static void MakeFifo(string path)
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("FIFOs are made with Linux's mkfifo");
        Assert.That(mkfifo(path, Convert.ToUInt32("600", 8)), Is.Zero, "mkfifo");
    }

    [DllImport("libc.so.6", SetLastError = true)]
    private static extern int mkfifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);
}
