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
/// <see cref="ObjectDisposedException"/>.</summary>
public sealed unsafe class Tensor : IDisposable
{
    private readonly BufferHandle? _buffer;   // the allocation this view reads, when it came from llmk_malloc
    private readonly object? _keepAlive;      // external memory's owner (e.g. a memory-mapped file)
    private readonly bool _ownsBuffer;
    private readonly nint _data;
    private readonly long[] _shape;
    private readonly long[] _strides;

    private Tensor(Context context, BufferHandle? buffer, object? keepAlive, bool ownsBuffer, nint data,
                   LlmkDtype dtype, long[] shape, long[] strides)
    {
        Context = context;
        _buffer = buffer;
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
        LlmKernels.Native.Check(NativeMethods.llmk_malloc(context.Pointer, bytes, &pointer));
        var buffer = new BufferHandle(context.Handle, (nint)pointer);
        return new Tensor(context, buffer, null, true, (nint)pointer, dtype, (long[])shape.Clone(), ContiguousStrides(shape));
    }

    /// <summary>Wraps memory the caller owns (for example a memory-mapped weight file) without copying. The
    /// memory must live on <paramref name="context"/>'s device and stay valid while <paramref name="keepAlive"/>
    /// is reachable.</summary>
    public static Tensor FromPointer(Context context, nint data, LlmkDtype dtype, long[] shape, object? keepAlive, long[]? strides = null)
    {
        CheckShape(shape);
        return new Tensor(context, null, keepAlive, false, data, dtype, (long[])shape.Clone(),
                          strides is null ? ContiguousStrides(shape) : (long[])strides.Clone());
    }

    public Context Context { get; }
    public LlmkDtype DType { get; }
    public int Rank => _shape.Length;
    public long[] Shape => (long[])_shape.Clone();
    public long[] Strides => (long[])_strides.Clone();
    public long ElementCount => ElementCountOf(_shape);
    public bool IsContiguous => _strides.AsSpan().SequenceEqual(ContiguousStrides(_shape));

    /// <summary>The data pointer; throws if the buffer behind it was disposed.</summary>
    public nint DataPointer
    {
        get
        {
            if (_buffer is { IsClosed: true })
                throw new ObjectDisposedException(nameof(Tensor), "the buffer behind this tensor was disposed");
            return _data;
        }
    }

    /// <summary>The native view passed to libllmk.</summary>
    public LlmkTensor Native
    {
        get
        {
            var view = new LlmkTensor
            {
                data = (void*)DataPointer,
                dtype = (int)DType,
                rank = Rank,
                device_type = (int)Context.DeviceType,
                device_index = Context.DeviceIndex,
            };
            for (int d = 0; d < Rank; d++)
            {
                view.shape[d] = _shape[d];
                view.strides[d] = _strides[d];
            }
            return view;
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
        new(Context, _buffer, _keepAlive, false, DataPointer + (nint)ByteCount(DType, elementOffset), DType, shape, strides);

    /// <summary>Copies raw bytes from the host; the tensor must be contiguous and the byte counts equal.</summary>
    public void CopyFrom<T>(ReadOnlySpan<T> source) where T : unmanaged
    {
        long bytes = CheckHostTransfer<T>(source.Length);
        fixed (T* src = source)
            LlmKernels.Native.Check(NativeMethods.llmk_upload(Context.Pointer, (void*)DataPointer, src, (ulong)bytes));
        GC.KeepAlive(this);
    }

    /// <summary>Copies raw bytes to the host; the tensor must be contiguous and the byte counts equal.</summary>
    public void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        long bytes = CheckHostTransfer<T>(destination.Length);
        fixed (T* dst = destination)
            LlmKernels.Native.Check(NativeMethods.llmk_download(Context.Pointer, dst, (void*)DataPointer, (ulong)bytes));
        GC.KeepAlive(this);
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
        ConvertInto(staging, this);
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
        ConvertInto(this, staging);
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
        fixed (byte* host = bytes)
        {
            LlmKernels.Native.Check(NativeMethods.llmk_download(Context.Pointer, host, (void*)DataPointer, (ulong)bytes.Length));
            if (IsQuantized(DType)) // blocks are contiguous rows: every byte of the span is the view's (NaN scales)
                bytes.AsSpan().Fill(0xFF);
            else
            {
                int size = ElementSize(DType);
                ForEachOffset(offset => bytes.AsSpan((int)(offset * size), size).Fill(0xFF));
            }
            LlmKernels.Native.Check(NativeMethods.llmk_upload(Context.Pointer, (void*)DataPointer, host, (ulong)bytes.Length));
        }
        GC.KeepAlive(this);
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
            _buffer!.Dispose();
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

    private long CheckHostTransfer<T>(int count) where T : unmanaged
    {
        if (!IsContiguous)
            throw new InvalidOperationException("host transfers need a contiguous tensor");
        long bytes = ByteCount(DType, ElementCount);
        if ((long)count * sizeof(T) != bytes)
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

    private static void ConvertInto(Tensor source, Tensor destination)
    {
        var src = source.Native;
        var dst = destination.Native;
        LlmKernels.Native.Check(NativeMethods.llmk_convert(source.Context.Pointer, &src, &dst));
        GC.KeepAlive(source);
        GC.KeepAlive(destination);
    }
}
