using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace LlmKernels.Tests;

/// <summary>Contexts, memory, the loader and the error path, independent of any kernel.</summary>
public class ContextTests
{
    [Test]
    public void CpuContextReportsItsDevice()
    {
        using var ctx = Context.CreateCpu(2);
        Assert.That(ctx.DeviceType, Is.EqualTo(LlmkDeviceType.Cpu));
        Assert.That(ctx.IsCuda, Is.False);
    }

    [Test]
    public void CpuContextsSayWhichKernelsAndThreadsTheyRun()
    {
        using var fast = Context.CreateCpu();
        Assert.That(fast.CpuKernels, Is.AnyOf(LlmkCpuKernels.Portable, LlmkCpuKernels.Avx2, LlmkCpuKernels.Avx512),
                    "Fast resolves to a flavour");
        Assert.That(fast.Threads, Is.InRange(1, Environment.ProcessorCount));
        Assert.That(fast.ToString(), Is.EqualTo($"cpu ({Context.CpuKernelsName(fast.CpuKernels)}, {fast.Threads} thread{(fast.Threads == 1 ? "" : "s")})"));
        using var reference = Context.CreateCpu(3, LlmkCpuKernels.Reference);
        Assert.That((reference.CpuKernels, reference.Threads), Is.EqualTo((LlmkCpuKernels.Reference, 3)));
        Assert.That(reference.ToString(), Is.EqualTo("cpu (reference, 3 threads)"));
        // The portable flavour runs on any CPU; Fast picks the best one available.
        Assert.That(Context.CpuKernelsAvailable(LlmkCpuKernels.Portable, out var none), Is.True, none);
        if (Context.CpuKernelsAvailable(LlmkCpuKernels.Avx512, out _))
            Assert.That(fast.CpuKernels, Is.EqualTo(LlmkCpuKernels.Avx512));
        else if (Context.CpuKernelsAvailable(LlmkCpuKernels.Avx2, out _))
            Assert.That(fast.CpuKernels, Is.EqualTo(LlmkCpuKernels.Avx2));
    }

    [Test]
    public void CpuContextArgumentsAreChecked()
    {
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Context.CreateCpu(int.MaxValue), "llmk_context_create_cpu",
                                 "num_threads = 2147483647", "logical CPUs");
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Context.CreateCpu(1, (LlmkCpuKernels)99), "kernels = 99");
        foreach (var kernels in new[] { LlmkCpuKernels.Avx2, LlmkCpuKernels.Avx512 })
            if (!Context.CpuKernelsAvailable(kernels, out var why))
            {
                Assert.That(why, Does.Contain(Context.CpuKernelsName(kernels)));
                TestSupport.ExpectStatus(LlmkStatus.Unavailable, () => Context.CreateCpu(1, kernels), "cannot run");
            }
    }

    [Test]
    public void LoaderSaysWhatItLoadedAndWhyNotCuda()
    {
        var info = NativeLibraryLoader.Loaded;
        TestContext.Out.WriteLine($"{info.Path} (cuda: {info.IsCuda}); cuda skipped: {info.CudaSkippedReason}");
        Assert.That(File.Exists(info.Path), Is.True, info.Path);
        if (!info.IsCuda)
            Assert.That(info.CudaSkippedReason, Is.Not.Null.And.Not.Empty);
    }

    /// <summary>One version: llmk_version() is CMake's project(VERSION), which the build checks against the header's
    /// LLMK_VERSION_* (the generated constants), and which pack.sh checks against the assemblies' Version.</summary>
    [Test]
    public void NativeVersionIsTheHeadersAndTheAssemblys()
    {
        var header = $"{LlmkConstants.VersionMajor}.{LlmkConstants.VersionMinor}.{LlmkConstants.VersionPatch}";
        var assembly = typeof(Context).Assembly.GetName().Version!;
        Assert.That(NativeLibraryLoader.Loaded.Version, Does.Match($@"^{Regex.Escape(header)}\+cpu(\+cuda)?$"));
        Assert.That($"{assembly.Major}.{assembly.Minor}.{assembly.Build}", Is.EqualTo(header));
    }

    [Test]
    public void CudaContextIsUnavailableWithAReasonWhenThereIsNoDevice()
    {
        if (NativeLibraryLoader.Loaded.IsCuda)
            Assert.Ignore("a CUDA device is present");
        var e = TestSupport.ExpectStatus(LlmkStatus.Unavailable, () => Context.CreateCuda(), "llmk_context_create_cuda");
        TestContext.Out.WriteLine(e.Message);
    }

    [Test]
    public unsafe void FreeingForeignOrFreedMemoryIsRefused()
    {
        using var ctx = Context.CreateCpu();
        void* p;
        Native.Check(NativeMethods.llmk_malloc(ctx.Pointer, 100, &p));
        Native.Check(NativeMethods.llmk_free(ctx.Pointer, p));
        nint freed = (nint)p;
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Free(ctx, freed), "llmk_free", "already freed");
        nint foreign = Marshal.AllocHGlobal(16);
        try
        {
            TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Free(ctx, foreign), "llmk_free");
        }
        finally
        {
            Marshal.FreeHGlobal(foreign);
        }
    }

    private static unsafe void Free(Context ctx, nint pointer) => Native.Check(NativeMethods.llmk_free(ctx.Pointer, (void*)pointer));

    [Test]
    public unsafe void NullArgumentsAreRefused()
    {
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Native.Check(NativeMethods.llmk_context_create_cpu(1, null)), "out_context");
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Native.Check(NativeMethods.llmk_malloc(0, 8, null)), "llmk_malloc", "context");
        using var ctx = Context.CreateCpu();
        TestSupport.ExpectStatus(LlmkStatus.NullPointer, () => Native.Check(NativeMethods.llmk_upload(ctx.Pointer, null, null, 8)), "llmk_upload");
        TestSupport.ExpectStatus(LlmkStatus.Overflow, () => MallocHuge(ctx), "llmk_malloc");
    }

    [Test]
    public unsafe void StatusNamesCoverEveryStatus()
    {
        for (var s = LlmkStatus.Ok; s < LlmkStatus.Count; s++)
            Assert.That(Native.Utf8(NativeMethods.llmk_status_string(s)), Is.EqualTo("LLMK_STATUS_" + ToUpperSnake(s.ToString())));
        Assert.That(Native.Utf8(NativeMethods.llmk_status_string(LlmkStatus.Count)), Is.EqualTo("unknown status"));
    }

    [Test]
    public void UploadDownloadRoundTripsAndViewsShareMemory()
    {
        using var ctx = Context.CreateCpu();
        var rng = TestSupport.Rng();
        var values = Verification.RandomData.Floats(rng, 6 * 5);
        using var t = ctx.FromHost<float>(values, LlmkDtype.F32, 6, 5);
        Assert.That(t.ToArray<float>(), Is.EqualTo(values));
        using var column = t.Slice(1, 2, 1);
        Assert.Throws<InvalidOperationException>(() => column.Reshape(6), "a strided column is not contiguous");
        Assert.That(column.ToFloatArray(), Is.EqualTo(Enumerable.Range(0, 6).Select(r => values[r * 5 + 2])));
        column.Fill(7);
        var after = t.ToArray<float>();
        for (int i = 0; i < after.Length; i++)
            Assert.That(after[i], Is.EqualTo(i % 5 == 2 ? 7f : values[i]), $"element {i}");
    }

    [Test]
    public void UsingATensorAfterItsBufferIsDisposedThrows()
    {
        using var ctx = Context.CreateCpu();
        var t = ctx.Allocate(LlmkDtype.F32, 4, 4);
        var view = t.Slice(0, 1, 2);
        t.Dispose();
        t.Dispose(); // disposing twice is harmless
        Assert.Throws<ObjectDisposedException>(() => _ = view.Native);
        Assert.Throws<ObjectDisposedException>(() => t.ToArray<float>());
    }

    [Test]
    public void ContextOutlivesItsBuffersNatively()
    {
        var ctx = Context.CreateCpu();
        var t = ctx.FromFloats([1, 2, 3], LlmkDtype.F32, 3);
        ctx.Dispose();
        Assert.Throws<ObjectDisposedException>(() => _ = ctx.Pointer);
        t.Dispose(); // frees through the still-alive native context
    }

    private static unsafe void MallocHuge(Context ctx)
    {
        void* p;
        Native.Check(NativeMethods.llmk_malloc(ctx.Pointer, ulong.MaxValue, &p));
    }

    private static string ToUpperSnake(string name) =>
        string.Concat(name.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));
}
