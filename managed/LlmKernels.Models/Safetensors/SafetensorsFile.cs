using System.Text.Json;

namespace LlmKernels.Models.Safetensors;

/// <summary>Element types of the safetensors format (the strings its header uses).</summary>
public enum SafetensorsDtype
{
    Bool, U8, I8, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64, F8E4M3, F8E5M2,
}

/// <summary>One tensor of a safetensors file: where its bytes are, relative to the data section.</summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDtype DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;

    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => $"{Name} {DType} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// A safetensors file, memory-mapped read-only. The layout is: u64 little-endian header length N, N bytes
/// of UTF-8 JSON (tensor name -> {dtype, shape, data_offsets}, plus an optional "__metadata__" string map),
/// then the data section. Everything is validated in <see cref="Open"/>, before any pointer is handed out:
/// a file that opens never yields a tensor whose bytes lie outside the file or overlap another tensor's.
/// Tensor data is never copied: <see cref="GetPointer"/> points into the mapping, which lives until
/// <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The limit the reference implementation uses; a larger header is a corrupt length.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MappedFile _file;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensors;

    public string Path => _file.Path;

    public long FileLength => _file.Length;

    /// <summary>The mapping's handle, which tensors viewing it hold during kernel calls (see <see cref="MappedFile.Memory"/>).</summary>
    internal System.Runtime.InteropServices.SafeHandle Memory => _file.Memory;

    /// <summary>The "__metadata__" map (empty if absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    private SafetensorsFile(MappedFile file, long dataStart, List<SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        _file = file;
        _dataStart = dataStart;
        Tensors = tensors;
        _tensors = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Metadata = metadata;
    }

    /// <summary>Bytes per element of a dtype.</summary>
    public static int DtypeSize(SafetensorsDtype dtype) => dtype switch
    {
        SafetensorsDtype.Bool or SafetensorsDtype.U8 or SafetensorsDtype.I8 or SafetensorsDtype.F8E4M3
            or SafetensorsDtype.F8E5M2 => 1,
        SafetensorsDtype.I16 or SafetensorsDtype.U16 or SafetensorsDtype.F16 or SafetensorsDtype.BF16 => 2,
        SafetensorsDtype.I32 or SafetensorsDtype.U32 or SafetensorsDtype.F32 => 4,
        _ => 8,
    };

    private static readonly Dictionary<string, SafetensorsDtype> DtypeNames = new(StringComparer.Ordinal)
    {
        ["BOOL"] = SafetensorsDtype.Bool, ["U8"] = SafetensorsDtype.U8, ["I8"] = SafetensorsDtype.I8,
        ["I16"] = SafetensorsDtype.I16, ["U16"] = SafetensorsDtype.U16, ["F16"] = SafetensorsDtype.F16,
        ["BF16"] = SafetensorsDtype.BF16, ["I32"] = SafetensorsDtype.I32, ["U32"] = SafetensorsDtype.U32,
        ["F32"] = SafetensorsDtype.F32, ["I64"] = SafetensorsDtype.I64, ["U64"] = SafetensorsDtype.U64,
        ["F64"] = SafetensorsDtype.F64, ["F8_E4M3"] = SafetensorsDtype.F8E4M3, ["F8_E5M2"] = SafetensorsDtype.F8E5M2,
    };

    /// <summary>The header spelling of a dtype ("BF16").</summary>
    public static string DtypeName(SafetensorsDtype dtype) => DtypeNames.First(kv => kv.Value == dtype).Key;

    /// <summary>Maps and validates a file. Every problem is a <see cref="ModelFormatException"/>.</summary>
    public static SafetensorsFile Open(string path)
    {
        var file = MappedFile.Open(path, 8, "the 8-byte header length that starts a safetensors file");
        try
        {
            var (tensors, metadata, dataStart) = ParseHeader(path, file.Base, file.Length);
            return new SafetensorsFile(file, dataStart, tensors, metadata);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static (List<SafetensorsTensorInfo>, Dictionary<string, string>, long) ParseHeader(string path, byte* basePtr, long fileLength)
    {
        ulong headerLength = 0;
        for (int i = 7; i >= 0; i--) headerLength = (headerLength << 8) | basePtr[i]; // little-endian on any host
        if (headerLength > MaxHeaderBytes)
            throw new ModelFormatException($"{path}: header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit (corrupt length, or not a safetensors file)");
        if ((long)headerLength > fileLength - 8)
            throw new ModelFormatException($"{path}: header length {headerLength} does not fit in the file ({fileLength} bytes, {fileLength - 8} after the length)");
        if (headerLength < 2)
            throw new ModelFormatException($"{path}: header length {headerLength} is too small for a JSON object");
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        var header = new ReadOnlySpan<byte>(basePtr + 8, (int)headerLength);
        if (header[0] != (byte)'{')
            throw new ModelFormatException($"{path}: header does not start with '{{' (first byte 0x{header[0]:X2}); expected a JSON object");

        ModelFile.RequireUtf8(header, path, "the header");
        // The header is small (<= 100 MB) and parsed once; the copy is for JsonDocument, never tensor data.
        var doc = ModelFile.ParseJson(header.ToArray(), $"{path}: header", new JsonDocumentOptions { MaxDepth = 16 });

        var tensors = new List<SafetensorsTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{path}: header is a JSON {doc.RootElement.ValueKind}, expected an object");
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                string name = property.Name;
                if (!seen.Add(name))
                    throw new ModelFormatException($"{path}: entry '{name}' appears twice in the header");
                if (name == "__metadata__")
                {
                    ParseMetadata(path, property.Value, metadata);
                    continue;
                }
                tensors.Add(ParseTensor(path, name, property.Value, dataLength));
            }
        }

        CheckLayout(path, tensors, dataStart, dataLength);
        return (tensors, metadata, dataStart);
    }

    /// <summary>
    /// The format's own rule (the reference implementation's validate): the tensors tile the data section
    /// exactly, in offset order, with no gap, no overlap and no byte after the last one. A header length one
    /// byte off, or a tensor dropped from the header, breaks the tiling instead of shifting every weight.
    /// Empty tensors hold no bytes and are left out of the tiling (the reference writes them at the running
    /// offset; anywhere inside the section is harmless). Each tensor must also start at a file offset aligned
    /// to its element size: the mapping is page-aligned, so that makes the pointers the kernels get aligned.
    /// </summary>
    private static void CheckLayout(string path, List<SafetensorsTensorInfo> tensors, long dataStart, long dataLength)
    {
        long covered = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (var t in tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            string where = $"{path}: tensor '{t.Name}': data_offsets [{t.Begin}, {t.End}]";
            if (t.Begin < covered)
                throw new ModelFormatException($"{where} overlap tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            if (t.Begin > covered)
                throw new ModelFormatException(
                    $"{where} leave a gap: bytes [{covered}, {t.Begin}) of the data section belong to no tensor" +
                    (previous is null ? "" : $" (after tensor '{previous.Name}')"));
            if ((dataStart + t.Begin) % DtypeSize(t.DType) != 0)
                throw new ModelFormatException(
                    $"{where} start at file offset {dataStart + t.Begin}, not a multiple of {DtypeSize(t.DType)} as {DtypeName(t.DType)} needs");
            covered = t.End;
            previous = t;
        }
        if (covered != dataLength)
            throw new ModelFormatException(
                $"{path}: the data section is {dataLength} bytes but its tensors end at byte {covered}: {dataLength - covered} trailing bytes " +
                "(a header length that is off, or a tensor missing from the header)");
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{path}: '__metadata__' is a JSON {value.ValueKind}, expected an object of strings");
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException($"{path}: '__metadata__' entry '{entry.Name}' is a JSON {entry.Value.ValueKind}, expected a string");
            metadata[entry.Name] = entry.Value.GetString()!;
        }
    }

    private static SafetensorsTensorInfo ParseTensor(string path, string name, JsonElement value, long dataLength)
    {
        string where = $"{path}: tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{where}: entry is a JSON {value.ValueKind}, expected an object with dtype, shape and data_offsets");

        if (!value.TryGetProperty("dtype", out var dtypeElement))
            throw new ModelFormatException($"{where}: missing 'dtype'");
        if (dtypeElement.ValueKind != JsonValueKind.String)
            throw new ModelFormatException($"{where}: 'dtype' is a JSON {dtypeElement.ValueKind}, expected a string");
        string dtypeName = dtypeElement.GetString()!;
        if (!DtypeNames.TryGetValue(dtypeName, out var dtype))
            throw new ModelFormatException($"{where}: unknown dtype '{dtypeName}' (known: {string.Join(", ", DtypeNames.Keys)})");

        if (!value.TryGetProperty("shape", out var shapeElement))
            throw new ModelFormatException($"{where}: missing 'shape'");
        if (shapeElement.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException($"{where}: 'shape' is a JSON {shapeElement.ValueKind}, expected an array of non-negative integers");
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        int d = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long extent) || extent < 0)
                throw new ModelFormatException($"{where}: shape[{d}] is {dim.GetRawText()}, expected a non-negative integer");
            shape[d++] = extent;
            try { elements = checked(elements * extent); }
            catch (OverflowException)
            {
                throw new ModelFormatException($"{where}: shape [{string.Join(", ", shape.Take(d))}...] has more elements than 64 bits can count");
            }
        }

        if (!value.TryGetProperty("data_offsets", out var offsetsElement))
            throw new ModelFormatException($"{where}: missing 'data_offsets'");
        if (offsetsElement.ValueKind != JsonValueKind.Array || offsetsElement.GetArrayLength() != 2)
            throw new ModelFormatException($"{where}: 'data_offsets' is {offsetsElement.GetRawText()}, expected [begin, end]");
        long begin = ReadOffset(where, offsetsElement[0], "begin");
        long end = ReadOffset(where, offsetsElement[1], "end");
        if (begin > end)
            throw new ModelFormatException($"{where}: data_offsets [{begin}, {end}] has begin > end");
        if (end > dataLength)
            throw new ModelFormatException($"{where}: data_offsets [{begin}, {end}] end past the data section ({dataLength} bytes)");

        long bytes;
        try { bytes = checked(elements * DtypeSize(dtype)); }
        catch (OverflowException)
        {
            throw new ModelFormatException($"{where}: {elements} elements of {dtypeName} overflow a 64-bit byte count");
        }
        if (bytes != end - begin)
            throw new ModelFormatException(
                $"{where}: shape [{string.Join(", ", shape)}] of {dtypeName} needs {bytes} bytes, but data_offsets [{begin}, {end}] span {end - begin}");
        return new SafetensorsTensorInfo(name, dtype, shape, begin, end);
    }

    private static long ReadOffset(string where, JsonElement element, string which)
    {
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt64(out long v) || v < 0)
            throw new ModelFormatException($"{where}: data_offsets {which} is {element.GetRawText()}, expected a non-negative integer");
        return v;
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public bool TryGetTensor(string name, out SafetensorsTensorInfo info) => _tensors.TryGetValue(name, out info!);

    /// <summary>The tensor called <paramref name="name"/>; a <see cref="ModelFormatException"/> naming the file if absent.</summary>
    public SafetensorsTensorInfo GetTensor(string name) =>
        _tensors.TryGetValue(name, out var info) ? info : throw new ModelFormatException($"{Path}: no tensor '{name}'");

    /// <summary>Address of a tensor's first byte inside the mapping; valid until Dispose.</summary>
    public nint GetPointer(SafetensorsTensorInfo info)
    {
        byte* b = _file.Base;
        if (!_tensors.TryGetValue(info.Name, out var own) || !ReferenceEquals(own, info))
            throw new ArgumentException($"tensor '{info.Name}' does not belong to {Path}", nameof(info));
        return (nint)(b + _dataStart + info.Begin);
    }

    /// <summary>A span over a tensor's bytes (no copy). Tensors over 2 GiB need <see cref="GetPointer"/>.</summary>
    public ReadOnlySpan<byte> GetBytes(SafetensorsTensorInfo info)
    {
        if (info.ByteLength > int.MaxValue)
            throw new NotSupportedException($"{Path}: tensor '{info.Name}' is {info.ByteLength} bytes, too large for a span; use GetPointer");
        return new ReadOnlySpan<byte>((void*)GetPointer(info), (int)info.ByteLength);
    }

    public void Dispose() => _file.Dispose();
}
