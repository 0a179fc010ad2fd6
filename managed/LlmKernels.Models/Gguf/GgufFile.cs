using System.Buffers.Binary;
using LlmKernels.Interop;

namespace LlmKernels.Models.Gguf;

/// <summary>The value types of GGUF metadata (gguf_type).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>
/// One tensor of a GGUF file. <see cref="Shape"/> is ours (outermost first), the reverse of GGUF's ne
/// (innermost first): an HF weight [out, in] is stored with ne = [in, out] and comes back as [out, in].
/// <see cref="Offset"/> is from the start of the file.
/// </summary>
public sealed record GgufTensorInfo(string Name, LlmkDtype DType, long[] Shape, long Offset, long ByteLength)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => $"{Name} {DType} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// The header of a GGUF file (v2 or v3, little-endian): metadata and tensor infos, everything validated.
/// Metadata values are byte, sbyte, ushort, short, uint, int, float, bool, string, ulong, long, double, or an
/// array: a typed .NET array of those (string[], float[], int[], ...) or object[] of arrays for nested ones.
/// </summary>
public sealed class GgufHeader
{
    public required int Version { get; init; }
    public required long Alignment { get; init; }
    /// <summary>Where the data section starts: the end of the tensor infos, aligned.</summary>
    public required long DataStart { get; init; }
    public required IReadOnlyDictionary<string, object> Metadata { get; init; }
    /// <summary>Tensors in file order.</summary>
    public required IReadOnlyList<GgufTensorInfo> Tensors { get; init; }
}

/// <summary>
/// A GGUF file, memory-mapped read-only. The layout: "GGUF", u32 version, u64 tensor count, u64 metadata
/// count, the metadata (key string, u32 type, value), the tensor infos (name, u32 rank, u64 ne[rank], u32 ggml
/// type, u64 offset into the data section), padding to general.alignment, the data section. <see cref="Parse"/>
/// validates all of it before any pointer is handed out: every count is bounded by the bytes left before
/// anything is allocated, strings are strict UTF-8, a tensor's bytes lie inside the file, are aligned, match its
/// type and shape and overlap no other tensor's. Tensor data is never copied: <see cref="GetPointer"/> points
/// into the mapping, which lives until <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian u32
    public const long DefaultAlignment = 32;
    /// <summary>Nested metadata arrays deeper than this are refused (a recursion bound, far above real files).</summary>
    public const int MaxArrayDepth = 8;

    private readonly MappedFile _file;
    private readonly Dictionary<string, GgufTensorInfo> _tensors;

    public string Path => _file.Path;
    public long FileLength => _file.Length;

    /// <summary>The mapping's handle, which tensors viewing it hold during kernel calls (see <see cref="MappedFile.Memory"/>).</summary>
    internal System.Runtime.InteropServices.SafeHandle Memory => _file.Memory;
    public GgufHeader Header { get; }
    public IReadOnlyDictionary<string, object> Metadata => Header.Metadata;
    public IReadOnlyList<GgufTensorInfo> Tensors => Header.Tensors;

    private GgufFile(MappedFile file, GgufHeader header)
    {
        _file = file;
        Header = header;
        _tensors = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The ggml types this runner takes, by ggml_type number, with llama.cpp's names.</summary>
    private static readonly Dictionary<uint, LlmkDtype> SupportedTypes = new()
    {
        [0] = LlmkDtype.F32, [1] = LlmkDtype.F16, [2] = LlmkDtype.Q4_0, [8] = LlmkDtype.Q8_0, [12] = LlmkDtype.Q4_K,
        [14] = LlmkDtype.Q6_K, [30] = LlmkDtype.Bf16,
    };

    private static readonly string[] GgmlTypeNames =
    [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
        "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16",
        "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4",
        "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
    ];

    /// <summary>llama.cpp's name of a ggml type number ("Q5_K"), or "type N" for one it does not name.</summary>
    public static string GgmlTypeName(uint type) => type < GgmlTypeNames.Length ? GgmlTypeNames[type] : $"type {type}";

    /// <summary>Maps and validates a file. Every problem is a <see cref="ModelFormatException"/> naming the file.</summary>
    public static GgufFile Open(string path)
    {
        var file = MappedFile.Open(path, 24, "the 24 bytes (magic, version, counts) that start a GGUF file");
        try
        {
            // The header is parsed from the first 2 GiB at most; tensor data past that is only bounds-checked.
            var bytes = new ReadOnlySpan<byte>(file.Base, (int)Math.Min(file.Length, int.MaxValue));
            return new GgufFile(file, Parse(bytes, path, file.Length));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Validates a GGUF file held in memory (<paramref name="fileLength"/> defaults to the span's length:
    /// pass a larger one when <paramref name="bytes"/> is only the start of the file).</summary>
    public static GgufHeader Parse(ReadOnlySpan<byte> bytes, string source = "gguf", long fileLength = -1)
    {
        if (fileLength < 0) fileLength = bytes.Length;
        var r = new Reader(bytes, source);
        uint magic = r.U32("the magic");
        if (magic != Magic)
            throw new ModelFormatException($"{source}: bad magic 0x{magic:X8} (bytes {Hex(bytes[..4])}); a GGUF file starts with \"GGUF\"");
        uint version = r.U32("the version");
        if (version is not (2 or 3))
            throw new ModelFormatException($"{source}: GGUF version {version} is not supported (2 and 3 are{(version == 1 ? "; version 1 has 32-bit counts" : version > 0xFFFF ? "; a big-endian file?" : "")})");
        ulong tensorCount = r.U64("the tensor count");
        ulong kvCount = r.U64("the metadata count");
        // A metadata entry takes at least 13 bytes (key length, type, a 1-byte value), a tensor info 24 (name
        // length, rank, type, offset).
        r.CheckCount(kvCount, 13, "metadata entries");
        r.CheckCount(tensorCount, 24, "tensor infos");

        var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = r.String($"metadata entry {i}: the key");
            if (key.Length == 0) throw new ModelFormatException($"{source}: metadata entry {i} has an empty key");
            var type = (GgufValueType)r.U32($"metadata '{key}': the type");
            object value = r.Value(type, $"metadata '{key}'", 0);
            if (!metadata.TryAdd(key, value))
                throw new ModelFormatException($"{source}: metadata '{key}' appears twice");
        }

        long alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out var a))
        {
            if (a is not uint align || align == 0 || (align & (align - 1)) != 0)
                throw new ModelFormatException($"{source}: metadata 'general.alignment' is {Describe(a)}; expected a power of two (uint32)");
            alignment = align;
        }

        var infos = new List<(string Name, LlmkDtype DType, long[] Shape, ulong Offset, long Bytes)>((int)tensorCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = r.String($"tensor info {i}: the name");
            string where = $"{source}: tensor '{name}'";
            if (!names.Add(name)) throw new ModelFormatException($"{where} appears twice");
            uint rank = r.U32($"tensor '{name}': the rank");
            if (rank is < 1 or > LlmkConstants.MaxRank)
                throw new ModelFormatException($"{where}: rank {rank}; expected 1..{LlmkConstants.MaxRank}");
            var ne = new long[rank];
            long elements = 1;
            for (int d = 0; d < rank; d++)
            {
                ulong extent = r.U64($"tensor '{name}': ne[{d}]");
                if (extent == 0 || extent > long.MaxValue)
                    throw new ModelFormatException($"{where}: ne[{d}] is {extent}; dimensions must be positive");
                ne[d] = (long)extent;
                try { elements = checked(elements * ne[d]); }
                catch (OverflowException)
                {
                    throw new ModelFormatException($"{where}: ne [{string.Join(", ", ne.Take(d + 1))}...] has more elements than 64 bits can count");
                }
            }
            uint ggmlType = r.U32($"tensor '{name}': the type");
            if (!SupportedTypes.TryGetValue(ggmlType, out var dtype))
                throw new ModelFormatException($"{where} has ggml type {GgmlTypeName(ggmlType)} ({ggmlType}); supported: {string.Join(", ", SupportedTypes.Keys.Select(GgmlTypeName))}");
            var (block, blockBytes) = Tensor.BlockOf(dtype);
            if (ne[0] % block != 0)
                throw new ModelFormatException($"{where}: ne[0] = {ne[0]} is not a multiple of the {GgmlTypeName(ggmlType)} block ({block})");
            long byteLength;
            try { byteLength = checked(elements / block * blockBytes); }
            catch (OverflowException)
            {
                throw new ModelFormatException($"{where}: {elements} elements of {GgmlTypeName(ggmlType)} overflow a 64-bit byte count");
            }
            ulong offset = r.U64($"tensor '{name}': the offset");
            if (offset % (ulong)alignment != 0)
                throw new ModelFormatException($"{where}: offset {offset} is not a multiple of the alignment ({alignment})");
            Array.Reverse(ne);
            infos.Add((name, dtype, ne, offset, byteLength));
        }

        long dataStart = (r.Position + alignment - 1) / alignment * alignment;
        if (dataStart > fileLength && tensorCount > 0)
            throw new ModelFormatException($"{source}: the data section would start at byte {dataStart}, past the end of the file ({fileLength} bytes)");
        var tensors = new List<GgufTensorInfo>(infos.Count);
        foreach (var t in infos)
        {
            // offset + bytes <= data length, without overflow: offset alone may be huge.
            long dataLength = fileLength - dataStart;
            if (t.Offset > (ulong)dataLength || t.Bytes > dataLength - (long)t.Offset)
                throw new ModelFormatException(
                    $"{source}: tensor '{t.Name}': {t.Bytes} bytes at data offset {t.Offset} end past the end of the file (data section {dataLength} bytes)");
            tensors.Add(new GgufTensorInfo(t.Name, t.DType, t.Shape, dataStart + (long)t.Offset, t.Bytes));
        }

        var sorted = tensors.OrderBy(t => t.Offset).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            var (before, after) = (sorted[i - 1], sorted[i]);
            if (after.Offset < before.Offset + before.ByteLength)
                throw new ModelFormatException(
                    $"{source}: tensor '{after.Name}' (data offset {after.Offset - dataStart}) overlaps tensor '{before.Name}' ({before.ByteLength} bytes at data offset {before.Offset - dataStart})");
        }
        return new GgufHeader { Version = (int)version, Alignment = alignment, DataStart = dataStart, Metadata = metadata, Tensors = tensors };
    }

    private static string Hex(ReadOnlySpan<byte> b) => string.Join(" ", b.ToArray().Select(x => x.ToString("X2")));

    /// <summary>A metadata value for a message: its value if short, else its type.</summary>
    public static string Describe(object? value) => value switch
    {
        null => "missing",
        string s => s.Length <= 40 ? $"\"{s}\" (string)" : "a string",
        Array array => $"an array of {array.Length} {array.GetType().GetElementType()!.Name}",
        bool or byte or sbyte or ushort or short or uint or int or ulong or long or float or double => $"{value} ({value.GetType().Name})",
        _ => value.GetType().Name,
    };

    /// <summary>tokenizer.chat_template (a Jinja template), or null when the file has none.</summary>
    public string? ChatTemplate => new GgufMetadata(Metadata, Path).OptionalString("tokenizer.chat_template");

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public bool TryGetTensor(string name, out GgufTensorInfo info) => _tensors.TryGetValue(name, out info!);

    /// <summary>Address of a tensor's first byte inside the mapping; valid until Dispose.</summary>
    public nint GetPointer(GgufTensorInfo info)
    {
        if (!_tensors.TryGetValue(info.Name, out var own) || !ReferenceEquals(own, info))
            throw new ArgumentException($"tensor '{info.Name}' does not belong to {Path}", nameof(info));
        return (nint)(_file.Base + info.Offset);
    }

    public void Dispose() => _file.Dispose();

    /// <summary>Little-endian reads that name what was being read when the bytes ran out.</summary>
    private ref struct Reader(ReadOnlySpan<byte> bytes, string source)
    {
        private readonly ReadOnlySpan<byte> _bytes = bytes;
        public int Position { get; private set; }

        private long Left => _bytes.Length - Position;

        private ReadOnlySpan<byte> Take(long count, string what)
        {
            if (count > Left)
                throw new ModelFormatException($"{source}: truncated: {what} needs {count} bytes at offset {Position}, the file has {Left} left");
            var span = _bytes.Slice(Position, (int)count);
            Position += (int)count;
            return span;
        }

        public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));

        public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

        /// <summary>Refuses a count of items that could not fit in the bytes left (before anything is allocated).</summary>
        public void CheckCount(ulong count, long minItemBytes, string what)
        {
            if (count > (ulong)(Left / minItemBytes))
                throw new ModelFormatException($"{source}: {count} {what} cannot fit in the {Left} bytes left (a corrupt count, or the file is truncated)");
        }

        private static readonly System.Text.UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

        public string String(string what)
        {
            ulong length = U64(what + " length");
            if (length > (ulong)Left)
                throw new ModelFormatException($"{source}: truncated: {what} is {length} bytes at offset {Position}, the file has {Left} left");
            int start = Position;
            var utf8 = Take((long)length, what);
            try
            {
                return StrictUtf8.GetString(utf8);
            }
            catch (System.Text.DecoderFallbackException e)
            {
                throw new ModelFormatException($"{source}: {what} is not valid UTF-8 (byte {e.Index} of the string at offset {start})", e);
            }
        }

        private static int FixedSize(GgufValueType type) => type switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            _ => 0,
        };

        public object Value(GgufValueType type, string what, int depth) => type switch
        {
            GgufValueType.String => String(what),
            GgufValueType.Array => Array(what, depth + 1),
            _ => FixedSize(type) > 0 ? Numbers(type, 1, what).GetValue(0)!
                : throw new ModelFormatException($"{source}: {what} has unknown value type {(uint)type}"),
        };

        private object Array(string what, int depth)
        {
            if (depth > MaxArrayDepth)
                throw new ModelFormatException($"{source}: {what} nests arrays deeper than {MaxArrayDepth}");
            var type = (GgufValueType)U32(what + " element type");
            ulong count = U64(what + " count");
            // Strings take at least their 8-byte length, arrays their 12-byte type and count.
            int minBytes = type switch { GgufValueType.String => 8, GgufValueType.Array => 12, _ => FixedSize(type) };
            if (minBytes == 0) throw new ModelFormatException($"{source}: {what} is an array of unknown value type {(uint)type}");
            CheckCount(count, minBytes, $"elements of {what}");
            int n = (int)count;
            if (type == GgufValueType.String)
            {
                var strings = new string[n];
                for (int i = 0; i < n; i++) strings[i] = String($"{what}[{i}]");
                return strings;
            }
            if (type == GgufValueType.Array)
            {
                var arrays = new object[n];
                for (int i = 0; i < n; i++) arrays[i] = Array($"{what}[{i}]", depth + 1);
                return arrays;
            }
            return Numbers(type, n, what);
        }

        /// <summary><paramref name="n"/> values of a fixed-size type as a typed array (bool[], uint[], float[], ...).</summary>
        private System.Array Numbers(GgufValueType type, int n, string what)
        {
            var v = Take((long)n * FixedSize(type), what);
            switch (type)
            {
                case GgufValueType.Bool:
                    var bools = new bool[n];
                    for (int i = 0; i < n; i++)
                        bools[i] = v[i] <= 1 ? v[i] == 1 : throw new ModelFormatException($"{source}: {what} holds a bool of value {v[i]}; expected 0 or 1");
                    return bools;
                case GgufValueType.UInt8: return v.ToArray();
                case GgufValueType.Int8: return Read<sbyte>(v, n);
                case GgufValueType.UInt16: return Read<ushort>(v, n);
                case GgufValueType.Int16: return Read<short>(v, n);
                case GgufValueType.UInt32: return Read<uint>(v, n);
                case GgufValueType.Int32: return Read<int>(v, n);
                case GgufValueType.Float32: return Read<float>(v, n);
                case GgufValueType.UInt64: return Read<ulong>(v, n);
                case GgufValueType.Int64: return Read<long>(v, n);
                default: return Read<double>(v, n);
            }
        }

        /// <summary>The values as stored: GGUF is little-endian, as every host libllmk builds for.</summary>
        private static T[] Read<T>(ReadOnlySpan<byte> bytes, int n) where T : unmanaged =>
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(bytes)[..n].ToArray();
    }
}
