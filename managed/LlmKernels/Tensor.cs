using System.Runtime.InteropServices;
using LlmKernels.Interop;

namespace LlmKernels;

/// <summary>Memory from llmk_malloc. Holds a reference on its context so the native context outlives it.</summary>
internal sealed unsafe class BufferHandle : SafeHandle
{
    private readonly ContextHandle _context;

    public BufferHandle(ContextHandle context, nint pointer) : base(IntPtr.Zero, ownsHandle: true)
    {
        _context = context;
        bool added = false;
        context.DangerousAddRef(ref added);
        SetHandle(pointer);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        var status = NativeMethods.llmk_free(_context.DangerousGetHandle(), (void*)handle);
        _context.DangerousRelease();
        return status == LlmkStatus.Ok;
    }
}

/// <summary>A view of memory on a context's device: data, dtype, shape and strides (in elements). A tensor from
/// <see cref="Context.Allocate"/> owns its buffer and frees it on Dispose; views (<see cref="Slice"/>,
/// <see cref="Select"/>, <see cref="Reshape"/>) share it, and using any of them after the owner is disposed throws
/// <see cref="ObjectDisposedException"/>. Every native call holds the memory (<see cref="Acquire"/>), so a Dispose on
/// another thread during a call frees it when the call returns.</summary>
public sealed unsafe class Tensor : IDisposable
{
    private readonly SafeHandle? _memory;     // held during native calls: the llmk_malloc buffer, or an owner's handle
    private readonly object? _keepAlive;      // external memory's owner (e.g. a memory-mapped file)
    private readonly bool _ownsBuffer;
    private readonly nint _data;
    private readonly long[] _shape;
    private readonly long[] _strides;

    private Tensor(Context context, SafeHandle? memory, object? keepAlive, bool ownsBuffer, nint data,
                   LlmkDtype dtype, long[] shape, long[] strides)
    {
        Context = context;
        _memory = memory;
        _keepAlive = keepAlive;
        _ownsBuffer = ownsBuffer;
        _data = data;
        DType = dtype;
        _shape = shape;
        _strides = strides;
    }

    internal static Tensor Allocate(Context context, LlmkDtype dtype, long[] shape)
    {
        CheckShape(shape);
        ulong bytes = (ulong)ByteCount(dtype, ElementCountOf(shape));
        void* pointer;
        bool held = false;
        try
        {
            LlmKernels.Native.Check(NativeMethods.llmk_malloc(context.Acquire(ref held), bytes, &pointer));
        }
        finally
        {
            context.Release(held);
        }
        var buffer = new BufferHandle(context.Handle, (nint)pointer);
        context.CountAllocation();
        return new Tensor(context, buffer, null, true, (nint)pointer, dtype, (long[])shape.Clone(), ContiguousStrides(shape));
    }

    /// <summary>Wraps memory the caller owns (for example a memory-mapped weight file) without copying. The
    /// memory must live on <paramref name="context"/>'s device and stay valid while <paramref name="keepAlive"/>
    /// is reachable. A <see cref="SafeHandle"/> (a mapped view's) or a <see cref="Tensor"/> (whose memory this
    /// views) as <paramref name="keepAlive"/> is also held during every native call, as a buffer is: disposing it
    /// meanwhile frees the memory when the call returns, and later calls throw ObjectDisposedException.</summary>
    public static Tensor FromPointer(Context context, nint data, LlmkDtype dtype, long[] shape, object? keepAlive, long[]? strides = null)
    {
        CheckShape(shape);
        var memory = keepAlive switch
        {
            SafeHandle handle => handle,
            Tensor tensor => tensor._memory,
            _ => null,
        };
        return new Tensor(context, memory, keepAlive, false, data, dtype, (long[])shape.Clone(),
                          strides is null ? ContiguousStrides(shape) : (long[])strides.Clone());
    }

    public Context Context { get; }
    public LlmkDtype DType { get; }
    public int Rank => _shape.Length;
    public long[] Shape => (long[])_shape.Clone();
    public long[] Strides => (long[])_strides.Clone();
    public long ElementCount => ElementCountOf(_shape);
    public bool IsContiguous
    {
        get
        {
            long stride = 1; // row-major: the strides ContiguousStrides gives, compared without making them
            for (int d = Rank - 1; d >= 0; d--)
            {
                if (_strides[d] != stride) return false;
                stride *= _shape[d];
            }
            return true;
        }
    }

    /// <summary>The data pointer; throws if the buffer behind it was disposed.</summary>
    public nint DataPointer
    {
        get
        {
            if (_memory is { IsClosed: true })
                throw new ObjectDisposedException(nameof(Tensor), "the memory behind this tensor was disposed");
            return _data;
        }
    }

    /// <summary>The native view, for tests of the raw C API; nothing holds the memory behind it (the
    /// <see cref="Kernels"/> calls use <see cref="Acquire"/>).</summary>
    public LlmkTensor Native
    {
        get
        {
            _ = DataPointer; // ObjectDisposedException once disposed
            return View();
        }
    }

    /// <summary>The native view, its memory held for one native call: a Dispose meanwhile (on any thread) frees it
    /// only after <see cref="Release"/>. Throws ObjectDisposedException once the memory was disposed. Call in a try
    /// block with <paramref name="held"/> false, and Release(held) in its finally.</summary>
    internal LlmkTensor Acquire(ref bool held)
    {
        _memory?.DangerousAddRef(ref held); // ObjectDisposedException once the handle is closed
        return View();
    }

    /// <summary>Ends what <see cref="Acquire"/> began; nothing when <paramref name="held"/> is false. External memory
    /// without a handle stays reachable through this tensor until here.</summary>
    internal void Release(bool held)
    {
        if (held)
            _memory!.DangerousRelease();
        GC.KeepAlive(_keepAlive);
    }

    private LlmkTensor View()
    {
        var view = new LlmkTensor
        {
            data = (void*)_data,
            dtype = DType,
            rank = Rank,
            device_type = Context.DeviceType,
            device_index = Context.DeviceIndex,
        };
        for (int d = 0; d < Rank; d++)
        {
            view.shape[d] = _shape[d];
            view.strides[d] = _strides[d];
        }
        return view;
    }

    /// <summary>This tensor's context and memory, held for host transfers (see <see cref="Acquire"/>).</summary>
    private ref struct Held
    {
        private readonly Tensor _tensor;
        private bool _contextHeld, _memoryHeld;
        public readonly nint Context;
        public readonly void* Data;

        public Held(Tensor tensor)
        {
            _tensor = tensor;
            try
            {
                Context = tensor.Context.Acquire(ref _contextHeld);
                Data = tensor.Acquire(ref _memoryHeld).data;
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            _tensor.Release(_memoryHeld);
            _tensor.Context.Release(_contextHeld);
        }
    }

    public long Dim(int dim) => _shape[dim];

    /// <summary>Elements [start, start + length) of dimension <paramref name="dim"/>; shares memory.</summary>
    public Tensor Slice(int dim, long start, long length)
    {
        if ((uint)dim >= (uint)Rank)
            throw new ArgumentOutOfRangeException(nameof(dim), $"dimension {dim} of a rank-{Rank} tensor");
        if (start < 0 || length < 0 || start + length > _shape[dim])
            throw new ArgumentOutOfRangeException(nameof(start), $"slice [{start}, {start + length}) of dimension {dim} with size {_shape[dim]}");
        var shape = Shape;
        shape[dim] = length;
        return View(start * _strides[dim], shape, Strides);
    }

    /// <summary>Index <paramref name="index"/> of dimension <paramref name="dim"/>, with that dimension removed.</summary>
    public Tensor Select(int dim, long index)
    {
        if (Rank == 1)
            throw new InvalidOperationException("Select on a rank-1 tensor would give a scalar; use Slice");
        var slice = Slice(dim, index, 1);
        var shape = _shape.Where((_, d) => d != dim).ToArray();
        var strides = _strides.Where((_, d) => d != dim).ToArray();
        return slice.View(0, shape, strides);
    }

    /// <summary>The same contiguous memory with another shape of the same element count.</summary>
    public Tensor Reshape(params long[] shape)
    {
        CheckShape(shape);
        if (!IsContiguous)
            throw new InvalidOperationException("Reshape needs a contiguous tensor");
        if (ElementCountOf(shape) != ElementCount)
            throw new ArgumentException($"cannot reshape [{string.Join(", ", _shape)}] to [{string.Join(", ", shape)}]", nameof(shape));
        return View(0, (long[])shape.Clone(), ContiguousStrides(shape));
    }

    private Tensor View(long elementOffset, long[] shape, long[] strides) =>
        new(Context, _memory, _keepAlive, false, DataPointer + (nint)ByteCount(DType, elementOffset), DType, shape, strides);

    /// <summary>Copies raw bytes from the host; the tensor must be contiguous and the byte counts equal.</summary>
    public void CopyFrom<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        long bytes = CheckHostTransfer<T>(source.Length);
        fixed (T* src = source)
            Upload(src, bytes);
    }

    /// <summary>Copies <paramref name="bytes"/> raw bytes from host memory (a mapped file, which may exceed a span)
    /// into this contiguous tensor of as many bytes.</summary>
    internal void CopyFrom(nint source, long bytes)
    {
        Upload((void*)source, CheckHostTransfer<byte>(bytes));
    }

    private void Upload(void* source, long bytes)
    {
        using var held = new Held(this);
        LlmKernels.Native.Check(NativeMethods.llmk_upload(held.Context, held.Data, source, (ulong)bytes));
    }

    /// <summary>Copies raw bytes to the host; the tensor must be contiguous and the byte counts equal.</summary>
    public void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        long bytes = CheckHostTransfer<T>(destination.Length);
        using var held = new Held(this);
        fixed (T* dst = destination)
            LlmKernels.Native.Check(NativeMethods.llmk_download(held.Context, dst, held.Data, (ulong)bytes));
    }

    public T[] ToArray<T>() where T : unmanaged
    {
        var result = new T[checked(ByteCount(DType, ElementCount) / sizeof(T))];
        CopyTo<T>(result);
        return result;
    }

    /// <summary>Writes <paramref name="values"/> (row-major over this view's shape) rounded to this dtype; any strides.</summary>
    public void CopyFromFloats(ReadOnlySpan<float> values)
    {
        if (values.Length != ElementCount)
            throw new ArgumentException($"{values.Length} values for a tensor of {ElementCount} elements", nameof(values));
        using var staging = Context.Allocate(LlmkDtype.F32, _shape);
        staging.CopyFrom(values);
        Kernels.Convert(Context, staging, this);
    }

    /// <summary>The elements as f32, row-major over the shape, from any floating dtype and any strides.</summary>
    public float[] ToFloatArray()
    {
        var result = new float[ElementCount];
        if (DType == LlmkDtype.F32 && IsContiguous)
        {
            CopyTo<float>(result);
            return result;
        }
        using var staging = Context.Allocate(LlmkDtype.F32, _shape);
        Kernels.Convert(Context, this, staging);
        staging.CopyTo<float>(result);
        return result;
    }

    /// <summary>Sets every element to <paramref name="value"/>.</summary>
    public void Fill(float value)
    {
        var values = new float[ElementCount];
        Array.Fill(values, value);
        CopyFromFloats(values);
    }

    /// <summary>Sets every byte of every element to 0xFF: NaN for floating dtypes, -1 for integers, so
    /// elements a kernel fails to write are caught.</summary>
    public void Poison()
    {
        // Stage the byte range the view spans, overwrite the view's elements, write it back: works for any
        // strides and any device.
        long extent = 1;
        for (int d = 0; d < Rank; d++)
            extent += (_shape[d] - 1) * _strides[d];
        if (ElementCount == 0)
            return;
        var bytes = new byte[checked(ByteCount(DType, extent))];
        using var held = new Held(this);
        fixed (byte* host = bytes)
        {
            LlmKernels.Native.Check(NativeMethods.llmk_download(held.Context, host, held.Data, (ulong)bytes.Length));
            if (IsQuantized(DType)) // blocks are contiguous rows: every byte of the span is the view's (NaN scales)
                bytes.AsSpan().Fill(0xFF);
            else
            {
                int size = ElementSize(DType);
                ForEachOffset(offset => bytes.AsSpan((int)(offset * size), size).Fill(0xFF));
            }
            LlmKernels.Native.Check(NativeMethods.llmk_upload(held.Context, held.Data, host, (ulong)bytes.Length));
        }
    }

    /// <summary>The elements of a CPU tensor in place; contiguous only.</summary>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        if (Context.IsCuda)
            throw new InvalidOperationException("AsSpan needs a CPU tensor; use CopyTo for device memory");
        long bytes = CheckHostTransfer<T>(checked((int)(ByteCount(DType, ElementCount) / sizeof(T))));
        return new Span<T>((void*)DataPointer, checked((int)(bytes / sizeof(T))));
    }

    /// <summary>Frees the buffer if this tensor allocated it; views and external memory are left alone.</summary>
    public void Dispose()
    {
        if (_ownsBuffer)
            _memory!.Dispose();
    }

    public override string ToString() => $"Tensor({DType}, [{string.Join(", ", _shape)}], {Context})";

    /// <summary>Bytes per element of a plain dtype; a quantized dtype has none (see <see cref="ByteCount"/>).</summary>
    public static int ElementSize(LlmkDtype dtype) => dtype switch
    {
        LlmkDtype.F32 or LlmkDtype.I32 => 4,
        LlmkDtype.F16 or LlmkDtype.Bf16 => 2,
        LlmkDtype.I64 => 8,
        _ when IsQuantized(dtype) => throw new ArgumentException($"{dtype} is block-quantized: use ByteCount", nameof(dtype)),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Whether a dtype is one of GGUF's block layouts (Q8_0, Q4_0, Q4_K, Q6_K).</summary>
    public static bool IsQuantized(LlmkDtype dtype) => BlockOf(dtype).Elements > 1;

    /// <summary>Elements and bytes per block: (1, element size) for the plain dtypes, (32, 34) for Q8_0, ...</summary>
    public static (long Elements, long Bytes) BlockOf(LlmkDtype dtype)
    {
        long elements, bytes;
        LlmKernels.Native.Check(NativeMethods.llmk_dtype_block((int)dtype, &elements, &bytes));
        return (elements, bytes);
    }

    /// <summary>Average bytes per element: the element size, or block bytes / block elements (Q8_0: 1.0625).</summary>
    public static double BytesPerElement(LlmkDtype dtype)
    {
        var (block, bytes) = BlockOf(dtype);
        return (double)bytes / block;
    }

    /// <summary>Bytes that hold <paramref name="elements"/> elements of <paramref name="dtype"/> (whole blocks).</summary>
    public static long ByteCount(LlmkDtype dtype, long elements)
    {
        var (block, bytes) = BlockOf(dtype);
        if (elements % block != 0)
            throw new ArgumentException($"{elements} elements are not whole {dtype} blocks of {block}", nameof(elements));
        return checked(elements / block * bytes);
    }

    public static long[] ContiguousStrides(ReadOnlySpan<long> shape)
    {
        var strides = new long[shape.Length];
        long stride = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            strides[d] = stride;
            stride *= shape[d];
        }
        return strides;
    }

    private static long ElementCountOf(ReadOnlySpan<long> shape)
    {
        long count = 1;
        foreach (var n in shape)
            count = checked(count * n);
        return count;
    }

    private static void CheckShape(long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Length is < 1 or > LlmkConstants.MaxRank)
            throw new ArgumentException($"rank {shape.Length}; ranks 1..{LlmkConstants.MaxRank} are supported", nameof(shape));
        if (shape.Any(n => n < 0))
            throw new ArgumentException($"negative dimension in [{string.Join(", ", shape)}]", nameof(shape));
    }

    private long CheckHostTransfer<T>(long count) where T : unmanaged
    {
        if (!IsContiguous)
            throw new InvalidOperationException("host transfers need a contiguous tensor");
        long bytes = ByteCount(DType, ElementCount);
        if (count * sizeof(T) != bytes)
            throw new ArgumentException($"{count} x {sizeof(T)} bytes for a {DType} tensor of {ElementCount} elements ({bytes} bytes)");
        return bytes;
    }

    private void ForEachOffset(Action<long> action)
    {
        var index = new long[Rank];
        for (long i = 0; i < ElementCount; i++)
        {
            long offset = 0;
            for (int d = 0; d < Rank; d++)
                offset += index[d] * _strides[d];
            action(offset);
            for (int d = Rank - 1; d >= 0 && ++index[d] == _shape[d]; d--)
                index[d] = 0;
        }
    }
}
