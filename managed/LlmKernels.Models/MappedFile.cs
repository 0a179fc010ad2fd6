using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace LlmKernels.Models;

/// <summary>
/// A whole file mapped read-only, with a pointer to its first byte that stays valid until <see cref="Dispose"/>.
/// Every failure to open or map is a <see cref="ModelFormatException"/> naming the file.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;

    public string Path { get; }

    public long Length { get; }

    /// <summary>The view's handle: a tensor over the mapping holds it during each native call, so a Dispose meanwhile
    /// unmaps the file only when the call returns.</summary>
    public SafeHandle Memory => _view.SafeMemoryMappedViewHandle;

    /// <summary>The first byte of the mapping; ObjectDisposedException once disposed.</summary>
    public byte* Base
    {
        get
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            return _base;
        }
    }

    private MappedFile(string path, long length, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePtr)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        _base = basePtr;
    }

    /// <summary>Maps <paramref name="path"/>; a file shorter than <paramref name="minLength"/> bytes is refused
    /// with <paramref name="tooShort"/> (what a file of this format starts with).</summary>
    public static MappedFile Open(string path, long minLength, string tooShort)
    {
        ArgumentNullException.ThrowIfNull(path);
        ModelFile.RequireRegularFile(path); // a FIFO or a device would block or map nothing useful
        long length;
        try
        {
            length = new FileInfo(path).Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException($"{path}: cannot read the file: {e.Message}", e);
        }
        if (length < minLength)
            throw new ModelFormatException($"{path}: the file is {length} bytes, shorter than {tooShort}");

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePtr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
            var file = new MappedFile(path, length, map, view, basePtr + view.PointerOffset);
            map = null; // owned by the file from here
            view = null;
            return file;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new ModelFormatException($"{path}: cannot memory-map the file: {e.Message}", e);
        }
        finally
        {
            view?.Dispose();
            map?.Dispose();
        }
    }

    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
