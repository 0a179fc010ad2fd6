using System.Runtime.InteropServices;

namespace LlmKernels.Tests;

/// <summary>
/// Misuse of the C API as a careless caller commits it: each call must come back with a status and a message,
/// never a crash or a silent out-of-bounds access (under the sanitizer CI step, any such access fails the run).
/// </summary>
public unsafe class CApiMisuseTests
{
    private static nint CreateRaw()
    {
        nint ctx;
        Native.Check(NativeMethods.llmk_context_create_cpu(1, &ctx));
        return ctx;
    }

    private static void Check(LlmkStatus status) => Native.Check(status);

    /// <summary>A contiguous rank-1 f32 (or other dtype) view over raw memory.</summary>
    private static LlmkTensor View(void* data, long elements, LlmkDtype dtype = LlmkDtype.F32)
    {
        var t = new LlmkTensor { data = data, dtype = dtype, rank = 1, device_type = LlmkDeviceType.Cpu };
        t.shape[0] = elements;
        t.strides[0] = 1;
        return t;
    }

    private static void* Malloc(nint ctx, ulong bytes)
    {
        void* p;
        Check(NativeMethods.llmk_malloc(ctx, bytes, &p));
        return p;
    }

    private static LlmkStatus Add(nint ctx, LlmkTensor a, LlmkTensor b, LlmkTensor output) =>
        NativeMethods.llmk_add(ctx, &a, &b, &output);

    [Test]
    public void DestroyingAContextTwiceIsRefused()
    {
        nint ctx = CreateRaw();
        Check(NativeMethods.llmk_context_destroy(ctx));
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Check(NativeMethods.llmk_context_destroy(ctx)),
                                 "llmk_context_destroy", "not a live context");
    }

    [Test]
    public void CallsOnADestroyedContextAreRefused()
    {
        nint ctx = CreateRaw();
        Check(NativeMethods.llmk_context_destroy(ctx));
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Malloc(ctx, 16), "llmk_malloc", "not a live context");
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Check(NativeMethods.llmk_context_synchronize(ctx)),
                                 "llmk_context_synchronize", "not a live context");
        var host = new float[4];
        fixed (float* h = host)
        {
            var v = View(h, 4);
            TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Check(Add(ctx, v, v, v)), "llmk_add", "not a live context");
        }
    }

    [Test]
    public void AForeignPointerIsNotAContext()
    {
        nint fake = Marshal.AllocHGlobal(4096);
        try
        {
            new Span<byte>((void*)fake, 4096).Clear();
            TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Check(NativeMethods.llmk_context_destroy(fake)),
                                     "llmk_context_destroy", "not a live context");
        }
        finally
        {
            Marshal.FreeHGlobal(fake);
        }
    }

    [Test]
    public void AViewLargerThanItsBufferIsRefused()
    {
        using var ctx = Context.CreateCpu(1);
        void* small = Malloc(ctx.Pointer, 16);        // 4 floats
        void* other = Malloc(ctx.Pointer, 4096);
        var inside = View(other, 16);
        // From the start, 16 floats over a 4-float buffer; from an offset, a view that runs past the end.
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Check(Add(ctx.Pointer, View(small, 16), inside, inside)),
                                 "llmk_add", "a spans 64 bytes", "buffer of 16 bytes", "past its end");
        TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Check(Add(ctx.Pointer, View(other, 3), View(other, 3), View((float*)small + 2, 3))),
                                 "llmk_add", "out spans 12 bytes from offset 8");
        // A view that fits exactly is fine.
        Check(Add(ctx.Pointer, View(small, 4), View(other, 4), View(other, 4)));
    }

    [Test]
    public void UploadsDownloadsAndCopiesPastABufferAreRefused()
    {
        using var ctx = Context.CreateCpu(1);
        void* buffer = Malloc(ctx.Pointer, 64);
        void* second = Malloc(ctx.Pointer, 256);
        var host = new byte[256];
        fixed (byte* h = host)
        {
            byte* hp = h;
            TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Check(NativeMethods.llmk_upload(ctx.Pointer, buffer, hp, 65)),
                                     "llmk_upload", "destination spans 65 bytes");
            TestSupport.ExpectStatus(LlmkStatus.OutOfRange,
                                     () => Check(NativeMethods.llmk_upload(ctx.Pointer, (byte*)buffer + 60, hp, 8)),
                                     "llmk_upload", "from offset 60");
            TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Check(NativeMethods.llmk_download(ctx.Pointer, hp, buffer, 128)),
                                     "llmk_download", "source spans 128 bytes");
            TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Check(NativeMethods.llmk_copy(ctx.Pointer, buffer, second, 256)),
                                     "llmk_copy", "destination");
            TestSupport.ExpectStatus(LlmkStatus.OutOfRange, () => Check(NativeMethods.llmk_copy(ctx.Pointer, second, buffer, 256)),
                                     "llmk_copy", "source");
            Check(NativeMethods.llmk_upload(ctx.Pointer, buffer, hp, 64));  // the whole buffer is fine
        }
    }

    [Test]
    public void UsingAFreedBufferIsRefused()
    {
        using var ctx = Context.CreateCpu(1);
        void* live = Malloc(ctx.Pointer, 64);
        void* freed = Malloc(ctx.Pointer, 64);
        Check(NativeMethods.llmk_free(ctx.Pointer, freed));
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Check(Add(ctx.Pointer, View(live, 16), View(freed, 16), View(live, 16))),
                                 "llmk_add", "b (", "freed");
        var host = new byte[16];
        fixed (byte* h = host)
        {
            byte* hp = h;
            TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Check(NativeMethods.llmk_upload(ctx.Pointer, freed, hp, 16)),
                                     "llmk_upload", "freed");
            TestSupport.ExpectStatus(LlmkStatus.InvalidArgument,
                                     () => Check(NativeMethods.llmk_download(ctx.Pointer, hp, (byte*)freed + 8, 8)),
                                     "llmk_download", "freed");
        }
    }

    [Test]
    public void ManyFreesReleaseTheOldestAndNeverRefuseLiveMemory()
    {
        // The quarantine is bounded: after more frees than it holds, memory is reused, and a fresh buffer at a
        // recycled address must be usable.
        using var ctx = Context.CreateCpu(1);
        for (int i = 0; i < 200; i++)
        {
            void* p = Malloc(ctx.Pointer, (ulong)(64 + 64 * (i % 7)));
            Check(Add(ctx.Pointer, View(p, 16), View(p, 16), View(p, 16)));
            Check(NativeMethods.llmk_free(ctx.Pointer, p));
        }
        // A buffer above the quarantine's byte budget is released at once.
        void* big = Malloc(ctx.Pointer, 65UL << 20);
        Check(NativeMethods.llmk_free(ctx.Pointer, big));
    }

    [Test]
    public void MisalignedDataPointersAreRefused()
    {
        using var ctx = Context.CreateCpu(1);
        byte* p = (byte*)Malloc(ctx.Pointer, 256);
        var ok = View(p, 8);
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument, () => Check(Add(ctx.Pointer, View(p + 2, 8), ok, ok)),
                                 "llmk_add", "a data pointer", "not aligned to 4 bytes", "f32");
        TestSupport.ExpectStatus(LlmkStatus.InvalidArgument,
                                 () => Check(Add(ctx.Pointer, View(p, 8, LlmkDtype.F16), View(p + 64, 8, LlmkDtype.F16), View(p + 129, 8, LlmkDtype.F16))),
                                 "llmk_add", "out data pointer", "not aligned to 2 bytes", "f16");
        // Foreign memory that is aligned is accepted: its extent is the caller's business.
        var host = new float[8];
        fixed (float* h = host)
            Check(Add(ctx.Pointer, View(h, 8), View(h, 8), View(h, 8)));
    }

    [Test]
    public void ThreadCountsBeyondTheBoundAreRefused()
    {
        foreach (int threads in new[] { 100_000, int.MaxValue })
        {
            nint ctx;
            var status = NativeMethods.llmk_context_create_cpu(threads, &ctx);
            Assert.That(status, Is.EqualTo(LlmkStatus.InvalidArgument), $"{threads} threads");
            Assert.That(Native.Utf8(NativeMethods.llmk_last_error()), Does.Contain($"num_threads = {threads}"));
            Assert.That(ctx, Is.EqualTo((nint)0));
        }
    }
}
