using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace LlmKernels.Models;

/// <summary>
/// The one way the runner reads a model's files: a regular file (not a FIFO, a device or a directory, which
/// would block forever or never end), small files read whole up to a size cap, JSON as strict UTF-8. Every
/// fault is a <see cref="ModelFormatException"/> naming the file and what is wrong. config.json,
/// tokenizer.json, the shard index and the safetensors headers all come through here; so should any new
/// format's reader.
/// </summary>
public static class ModelFile
{
    /// <summary>The default cap for a small file: the largest tokenizer.json files are tens of MB.</summary>
    public const long DefaultMaxBytes = 256L << 20;

    /// <summary>Throws unless <paramref name="path"/> exists and is a regular file (links are followed).</summary>
    public static void RequireRegularFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string? kind;
        try
        {
            if (Directory.Exists(path)) kind = "a directory";
            else if (!File.Exists(path)) throw new ModelFormatException($"{path}: no such file");
            else kind = NonRegularKind(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException($"{path}: cannot read: {e.Message}", e);
        }
        if (kind is not null)
            throw new ModelFormatException($"{path}: is {kind}, not a regular file");
    }

    /// <summary>The bytes of a small model file (at most <paramref name="maxBytes"/>).</summary>
    public static byte[] ReadSmallFile(string path, long maxBytes = DefaultMaxBytes)
    {
        RequireRegularFile(path);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            // Read at most one byte past the cap, whatever the length says: a file can grow while it is read.
            var buffer = new MemoryStream();
            var chunk = new byte[81920];
            int n;
            while ((n = stream.Read(chunk, 0, (int)Math.Min(chunk.Length, maxBytes + 1 - buffer.Length))) > 0)
            {
                buffer.Write(chunk, 0, n);
                if (buffer.Length > maxBytes)
                    throw new ModelFormatException($"{path}: larger than {maxBytes} bytes, the limit for this file");
            }
            return buffer.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFormatException($"{path}: cannot read: {e.Message}", e);
        }
    }

    /// <summary>A small JSON file, parsed (see <see cref="ParseJson"/>).</summary>
    /// <summary>A small text file (a chat template), strict UTF-8.</summary>
    public static string ReadUtf8Text(string path)
    {
        var bytes = ReadSmallFile(path);
        RequireUtf8(bytes, path, "the file");
        return System.Text.Encoding.UTF8.GetString(bytes);
    }

    public static JsonDocument ReadJson(string path, JsonDocumentOptions options = default) =>
        ParseJson(ReadSmallFile(path), path, options);

    /// <summary>
    /// JSON from bytes that must be strict UTF-8. Every string and property name is decoded once here, so that
    /// what the readers take out later cannot fail (System.Text.Json defers invalid UTF-8 inside strings and
    /// unpaired \u surrogate escapes to an InvalidOperationException at GetString).
    /// </summary>
    public static JsonDocument ParseJson(ReadOnlyMemory<byte> utf8, string source, JsonDocumentOptions options = default)
    {
        RequireUtf8(utf8.Span, source, "the file");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8, options);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{source}: not valid JSON: {e.Message}", e);
        }
        try
        {
            CheckStrings(doc.RootElement, source, "");
            return doc;
        }
        catch
        {
            doc.Dispose();
            throw;
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    /// <summary>Throws unless <paramref name="bytes"/> are valid UTF-8; <paramref name="what"/> says where they come from.</summary>
    public static void RequireUtf8(ReadOnlySpan<byte> bytes, string source, string what)
    {
        try
        {
            _ = StrictUtf8.GetCharCount(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new ModelFormatException($"{source}: {what} is not valid UTF-8 (invalid byte at offset {e.Index})", e);
        }
    }

    private static void CheckStrings(JsonElement element, string source, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name = Decode(() => property.Name, source, path);
                    CheckStrings(property.Value, source, path.Length == 0 ? name : $"{path}.{name}");
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in element.EnumerateArray()) CheckStrings(item, source, $"{path}[{i++}]");
                break;
            case JsonValueKind.String:
                Decode(element.GetString, source, path);
                break;
        }
    }

    private static string Decode(Func<string?> get, string source, string path)
    {
        try
        {
            return get() ?? "";
        }
        catch (InvalidOperationException e)
        {
            throw new ModelFormatException($"{source}: {(path.Length == 0 ? "root" : path)}: a string that is not valid Unicode: {e.Message}", e);
        }
    }

    /// <summary>What a non-regular file is ("a FIFO", "a character device"), or null for a regular file or when
    /// the platform cannot say (then the size cap still bounds the read).</summary>
    private static string? NonRegularKind(string path)
    {
        if (OperatingSystem.IsWindows())
            return File.GetAttributes(path).HasFlag(FileAttributes.Device) ? "a device" : null;
        if (!OperatingSystem.IsLinux()) return null;
        int mode;
        try
        {
            mode = LinuxFileMode(path);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null; // not glibc: no statx to ask
        }
        if (mode < 0) return null; // it vanished or cannot be examined: opening it will say why
        return (mode & 0xF000) switch
        {
            0x8000 => null,
            0x1000 => "a FIFO",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            0x4000 => "a directory",
            _ => "not a regular file",
        };
    }

    /// <summary>st_mode of path by statx(2), whose struct layout is the same on every Linux architecture; -1 on error.</summary>
    private static unsafe int LinuxFileMode(string path)
    {
        const int AtFdCwd = -100;
        const uint StatxType = 1;
        byte* buffer = stackalloc byte[256]; // struct statx
        if (statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return -1;
        return *(ushort*)(buffer + 28); // stx_mode
    }

    [DllImport("libc.so.6", EntryPoint = "statx")]
    private static extern unsafe int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buffer);
}
