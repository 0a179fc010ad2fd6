// Checks the LlmKernels package the way a user gets it (tests/package/run.sh runs this, framework-dependent and
// self-contained): the native library comes from the package, a kernel matches values computed here from its
// formula, errors carry the native message, the model runner generates, and the README example runs.
// Exit code 0 only if everything holds.
using System.Reflection;
using LlmKernels;
using LlmKernels.Interop;
using LlmKernels.Models;

try
{
    return args switch
    {
        [] => RunAll(),
        ["--expect-load-failure", var path] => ExpectLoadFailure(path),
        _ => Fail("usage: Consumer [--expect-load-failure <path given in LLMK_NATIVE_LIBRARY>]"),
    };
}
catch (CheckFailed e)
{
    return Fail(e.Message);
}
catch (Exception e)
{
    return Fail($"unexpected {e}");
}

static int RunAll()
{
    var info = NativeLibraryLoader.Loaded;
    Console.WriteLine(info.Describe());
    // The package's copy, not one found elsewhere on the machine.
    Check(info.Path.StartsWith(AppContext.BaseDirectory, StringComparison.Ordinal),
          $"the native library comes with the application: {info.Path}");
    var managedVersion = typeof(Context).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
    Check(info.Version.StartsWith(managedVersion + "+", StringComparison.Ordinal),
          $"native version {info.Version} matches LlmKernels.dll {managedVersion}");
    Check(info.IsCuda || !string.IsNullOrWhiteSpace(info.CudaSkippedReason), "a CPU-only load says why CUDA was not used");
    if (Environment.GetEnvironmentVariable(NativeLibraryLoader.BackendVariable) == "cpu")
        Check(!info.IsCuda && info.CudaSkippedReason == "LLMK_BACKEND=cpu", "LLMK_BACKEND=cpu gives the CPU build");

    using var ctx = Context.CreateCpu();
    CheckRmsNorm(ctx);
    CheckErrorMessage(ctx);

    Console.WriteLine("README example:");
    ReadmeExample.Run();

    CheckTinyModel(ctx);
    Console.WriteLine("package consumer: all checks passed");
    return 0;
}

// RMSNorm, y = x / sqrt(mean(x^2) + eps) * w, on ragged rows against the formula evaluated here in double.
static void CheckRmsNorm(Context ctx)
{
    const float eps = 1e-5f;
    float[] x = [1, 2, 3, 4, 5, -2, 0.5f, 3, 1, -4, 0.25f, -0.5f, 0.75f, -1, 8];
    float[] w = [0.5f, 1, 2, -1, 0.25f];
    // By hand: row 0 has mean(x^2) = 55/5 = 11, so y[0] = 1 / sqrt(11.00001) * 0.5 = 0.1507556.
    Check(Math.Abs(Expected(0) - 0.1507556) < 1e-7, $"the formula gives the hand-computed y[0] = 0.1507556 (got {Expected(0):F7})");

    using var xs = ctx.FromFloats(x, LlmkDtype.F32, 3, 5);
    using var ws = ctx.FromFloats(w, LlmkDtype.F32, 5);
    using var ys = ctx.Allocate(LlmkDtype.F32, 3, 5);
    ys.Fill(float.NaN); // an element the kernel does not write stays NaN and fails below
    Kernels.RmsNorm(ctx, xs, ws, eps, ys);
    var y = ys.ToFloatArray();
    for (int i = 0; i < x.Length; i++)
        Check(Math.Abs(y[i] - Expected(i)) <= 1e-6 + 1e-5 * Math.Abs(Expected(i)), $"rms_norm y[{i}] = {y[i]} vs {Expected(i):G9}", quiet: true);
    Console.WriteLine($"ok: rms_norm matches the formula on 3 rows ({string.Join(", ", y.Take(5).Select(v => v.ToString("G6")))}, ...)");

    double Expected(int i)
    {
        int row = i / w.Length, n = w.Length;
        double meanSquare = 0;
        for (int j = 0; j < n; j++)
            meanSquare += (double)x[row * n + j] * x[row * n + j] / n;
        return x[i] / Math.Sqrt(meanSquare + eps) * w[i % n];
    }
}

// A bad argument comes back as LlmkException with the native library's message.
static void CheckErrorMessage(Context ctx)
{
    using var x = ctx.FromFloats([1, 2, 3, 4], LlmkDtype.F32, 1, 4);
    using var w = ctx.FromFloats([1, 1, 1], LlmkDtype.F32, 3);
    using var y = ctx.Allocate(LlmkDtype.F32, 1, 4);
    try
    {
        Kernels.RmsNorm(ctx, x, w, 1e-6f, y);
        Check(false, "a weight of the wrong length is refused");
    }
    catch (LlmkException e)
    {
        Check(e.Status == LlmkStatus.ShapeMismatch && e.Message.Contains("llmk_rms_norm") && e.Message.Contains("weight"),
              $"a wrong weight shape gives ShapeMismatch naming llmk_rms_norm and weight: \"{e.Message}\"");
    }
}

// The model runner's built-in tiny Llama (random weights) generates a few tokens, greedily and reproducibly.
static void CheckTinyModel(Context ctx)
{
    using var model = TinyModels.Load(ctx, "tiny-llama");
    var tokenizer = TinyModels.CreateTokenizer();
    var first = new Generator(model, tokenizer).Generate("Hello, world", 6).ToList();
    var second = new Generator(model, tokenizer).Generate("Hello, world", 6).ToList();
    Check(first.Count is > 0 and <= 6 && first[^1].Stop != StopReason.None, $"generation stops within 6 tokens ({first.Count}, {first[^1].Stop})");
    Check(first.Select(t => t.Id).SequenceEqual(second.Select(t => t.Id)), "greedy generation is reproducible");
    Console.WriteLine($"ok: tiny-llama generated token ids [{string.Join(", ", first.Select(t => t.Id))}]");
}

// Run with LLMK_NATIVE_LIBRARY=<path> naming a missing file: loading must fail, naming the path.
static int ExpectLoadFailure(string path)
{
    Check(Environment.GetEnvironmentVariable(NativeLibraryLoader.PathVariable) == path, $"{NativeLibraryLoader.PathVariable} is {path}");
    try
    {
        using var ctx = Context.CreateCpu();
        return Fail($"loading succeeded although {NativeLibraryLoader.PathVariable}={path}");
    }
    catch (DllNotFoundException e)
    {
        Check(e.Message.Contains(path) && e.Message.Contains("no such file"), $"DllNotFoundException names {path}: \"{e.Message}\"");
        return 0;
    }
}

static void Check(bool condition, string what, bool quiet = false)
{
    if (!condition)
        throw new CheckFailed(what);
    if (!quiet)
        Console.WriteLine($"ok: {what}");
}

static int Fail(string message)
{
    Console.Error.WriteLine($"package consumer FAILED: {message}");
    return 1;
}

sealed class CheckFailed(string what) : Exception(what);
