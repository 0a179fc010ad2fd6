using System.Runtime.InteropServices;
using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>Owns a native llmk_context. Buffers allocated through it hold a reference, so the native context
/// outlives them even if the <see cref="Context"/> is disposed first.</summary>
internal sealed class ContextHandle : SafeHandle
{
    public ContextHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    public override bool IsInvalid => handle == IntPtr.Zero;

    internal void Set(nint pointer) => SetHandle(pointer);

    protected override bool ReleaseHandle() => NativeMethods.llmk_context_destroy(handle) == LlmkStatus.Ok;
}

/// <summary>A backend: the CPU, or one CUDA device with its own stream. Tensors belong to one context, and
/// every kernel call names the context it runs on.</summary>
public sealed unsafe class Context : IDisposable
{
    private readonly ContextHandle _handle;
    private bool _disposed; // the handle may stay open after Dispose while buffers still reference it

    private Context(ContextHandle handle)
    {
        _handle = handle;
        int type, index;
        Native.Check(NativeMethods.llmk_context_device(handle.DangerousGetHandle(), &type, &index));
        DeviceType = (LlmkDeviceType)type;
        DeviceIndex = index;
        if (DeviceType == LlmkDeviceType.Cpu)
        {
            int kernels, threads;
            Native.Check(NativeMethods.llmk_context_cpu_kernels(handle.DangerousGetHandle(), &kernels, &threads));
            CpuKernels = (LlmkCpuKernels)kernels;
            Threads = threads;
        }
    }

    /// <summary>A CPU context; <paramref name="threads"/> &lt;= 0 uses one thread per physical core this process
    /// may run on. <paramref name="kernels"/>: Fast (the default) picks the best flavour this CPU runs (avx512,
    /// avx2, else portable); Reference runs the plain C oracle. Results never depend on the thread count. Throws
    /// <see cref="LlmkException"/> (Unavailable, with the reason) for a flavour this CPU cannot run.</summary>
    public static Context CreateCpu(int threads = 0, LlmkCpuKernels kernels = LlmkCpuKernels.Fast)
    {
        var handle = new ContextHandle();
        nint pointer;
        Native.Check(NativeMethods.llmk_context_create_cpu_kernels(threads, (int)kernels, &pointer));
        handle.Set(pointer);
        return new Context(handle);
    }

    /// <summary>Whether this CPU and native build can run <paramref name="kernels"/>; the reason when not.</summary>
    public static bool CpuKernelsAvailable(LlmkCpuKernels kernels, out string? reason)
    {
        var status = NativeMethods.llmk_cpu_kernels_available((int)kernels);
        reason = status == LlmkStatus.Ok ? null : Native.Failure(status).Message;
        return reason is null;
    }

    /// <summary>The name of a CPU flavour: "reference", "fast", "portable", "avx2", "avx512".</summary>
    public static string CpuKernelsName(LlmkCpuKernels kernels) => Native.Utf8(NativeMethods.llmk_cpu_kernels_name((int)kernels));

    /// <summary>The kernels of a CPU context (what Fast resolved to); Reference on CUDA contexts, which have none.</summary>
    public LlmkCpuKernels CpuKernels { get; }

    /// <summary>Worker threads of a CPU context; 0 on CUDA.</summary>
    public int Threads { get; }

    /// <summary>A CUDA context on <paramref name="device"/>. Throws <see cref="LlmkException"/> with status
    /// Unavailable and the reason when CUDA cannot be used (no CUDA build loaded, no device, old driver).</summary>
    public static Context CreateCuda(int device = 0)
    {
        var handle = new ContextHandle();
        nint pointer;
        var status = NativeMethods.llmk_context_create_cuda(device, &pointer);
        if (status != LlmkStatus.Ok)
        {
            var failure = Native.Failure(status);
            var why = NativeLibraryLoader.Loaded.CudaSkippedReason;
            throw why is null ? failure : new LlmkException(status, $"{failure.Message}; the loader chose {NativeLibraryLoader.Loaded.Path} because {why}");
        }
        handle.Set(pointer);
        return new Context(handle);
    }

    /// <summary>Tries <see cref="CreateCuda"/>; returns null with the reason when CUDA is unavailable.</summary>
    public static Context? TryCreateCuda(out string? reason, int device = 0)
    {
        try
        {
            reason = null;
            return CreateCuda(device);
        }
        catch (LlmkException e) when (e.Status == LlmkStatus.Unavailable)
        {
            reason = e.Message;
            return null;
        }
    }

    public LlmkDeviceType DeviceType { get; }
    public int DeviceIndex { get; }
    public bool IsCuda => DeviceType == LlmkDeviceType.Cuda;

    /// <summary>The native context pointer; throws if this context was disposed. For calls that do not run while
    /// another thread may dispose the context (tests of the raw C API); a call on a shared context goes through
    /// <see cref="Acquire"/>.</summary>
    internal nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed || _handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    /// <summary>The native context, held for one native call: a <see cref="Dispose"/> meanwhile (on any thread)
    /// destroys it only after <see cref="Release"/>. Throws ObjectDisposedException once disposed. Call in a try
    /// block with <paramref name="held"/> false, and Release(held) in its finally.</summary>
    internal nint Acquire(ref bool held)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _handle.DangerousAddRef(ref held); // ObjectDisposedException once the handle is closed
        return _handle.DangerousGetHandle();
    }

    /// <summary>Ends what <see cref="Acquire"/> began; nothing when <paramref name="held"/> is false.</summary>
    internal void Release(bool held)
    {
        if (held)
            _handle.DangerousRelease();
    }

    internal ContextHandle Handle => _handle;

    /// <summary>Buffers allocated through this context so far (the runner's tests count a decode step's).</summary>
    internal long Allocations => Volatile.Read(ref _allocations);

    private long _allocations;

    internal void CountAllocation() => Interlocked.Increment(ref _allocations);

    /// <summary>A contiguous tensor of uninitialized memory on this context's device.</summary>
    public Tensor Allocate(LlmkDtype dtype, params long[] shape) => Tensor.Allocate(this, dtype, shape);

    /// <summary>A tensor holding <paramref name="values"/> rounded to <paramref name="dtype"/>.</summary>
    public Tensor FromFloats(ReadOnlySpan<float> values, LlmkDtype dtype, params long[] shape)
    {
        var tensor = Allocate(dtype, shape);
        try
        {
            tensor.CopyFromFloats(values);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>A tensor holding the raw bytes of <paramref name="values"/>; sizeof(T) must equal the dtype's size.</summary>
    public Tensor FromHost<T>(ReadOnlySpan<T> values, LlmkDtype dtype, params long[] shape) where T : unmanaged
    {
        var tensor = Allocate(dtype, shape);
        try
        {
            tensor.CopyFrom(values);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>Waits for all queued work and reports asynchronous device errors.</summary>
    public void Synchronize()
    {
        bool held = false;
        try
        {
            Native.Check(NativeMethods.llmk_context_synchronize(Acquire(ref held)));
        }
        finally
        {
            Release(held);
        }
    }

    /// <summary>"cuda:0", or "cpu (avx2, 2 threads)": the backend, and on the CPU the kernels and threads.</summary>
    public override string ToString() => IsCuda ? $"cuda:{DeviceIndex}" : $"cpu ({CpuKernelsName(CpuKernels)}, {Threads} thread{(Threads == 1 ? "" : "s")})";

    public void Dispose()
    {
        _disposed = true;
        _handle.Dispose();
    }
}
