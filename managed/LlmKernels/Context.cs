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
    }

    /// <summary>A CPU context; <paramref name="threads"/> &lt;= 0 uses every processor. Results do not depend
    /// on the thread count.</summary>
    public static Context CreateCpu(int threads = 0)
    {
        var handle = new ContextHandle();
        nint pointer;
        Native.Check(NativeMethods.llmk_context_create_cpu(threads, &pointer));
        handle.Set(pointer);
        return new Context(handle);
    }

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

    /// <summary>The native context pointer; throws if this context was disposed.</summary>
    internal nint Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed || _handle.IsClosed, this);
            return _handle.DangerousGetHandle();
        }
    }

    internal ContextHandle Handle => _handle;

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
        Native.Check(NativeMethods.llmk_context_synchronize(Pointer));
        GC.KeepAlive(this);
    }

    public override string ToString() => IsCuda ? $"cuda:{DeviceIndex}" : "cpu";

    public void Dispose()
    {
        _disposed = true;
        _handle.Dispose();
    }
}
