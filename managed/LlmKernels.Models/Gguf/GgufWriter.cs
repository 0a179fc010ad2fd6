using System.Text;
using LlmKernels.Interop;

namespace LlmKernels.Models.Gguf;

/// <summary>Writes GGUF v3 files (test fixtures, benchmark models): metadata, tensor infos, aligned data.</summary>
public static class GgufWriter
{
    /// <summary>One tensor: <paramref name="Shape"/> is ours (outermost first; written reversed as ne), <paramref name="Data"/>
    /// its bytes in <paramref name="DType"/>.</summary>
    public sealed record Entry(string Name, LlmkDtype DType, long[] Shape, ReadOnlyMemory<byte> Data);

    private static readonly Dictionary<LlmkDtype, uint> GgmlTypes = new()
    {
        [LlmkDtype.F32] = 0, [LlmkDtype.F16] = 1, [LlmkDtype.Q4_0] = 2, [LlmkDtype.Q8_0] = 8, [LlmkDtype.Q4_K] = 12,
        [LlmkDtype.Q6_K] = 14, [LlmkDtype.Bf16] = 30,
    };

    /// <summary>An f32 tensor.</summary>
    public static Entry F32(string name, float[] values, params long[] shape) =>
        new(name, LlmkDtype.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>
    /// The bytes of a GGUF file. Metadata values are written as the GGUF type of their .NET type (uint: UINT32,
    /// int: INT32, float: FLOAT32, bool, string, ulong, long, double, byte, sbyte, ushort, short) and arrays of
    /// those as arrays; general.alignment, when given, must be a uint and aligns the data.
    /// </summary>
    public static byte[] ToBytes(IEnumerable<KeyValuePair<string, object>> metadata, IEnumerable<Entry> tensors)
    {
        var kvs = metadata.ToList();
        var list = tensors.ToList();
        long alignment = kvs.FirstOrDefault(kv => kv.Key == "general.alignment").Value is uint a ? a : GgufFile.DefaultAlignment;
        using var stream = new MemoryStream();
        var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)list.Count);
        w.Write((ulong)kvs.Count);
        foreach (var (key, value) in kvs)
        {
            WriteString(w, key);
            WriteValue(w, value, key);
        }
        long offset = 0;
        foreach (var t in list)
        {
            long expected = Tensor.ByteCount(t.DType, t.Shape.Aggregate(1L, (x, y) => x * y));
            if (expected != t.Data.Length)
                throw new ArgumentException($"tensor '{t.Name}': shape [{string.Join(", ", t.Shape)}] of {t.DType} needs {expected} bytes, got {t.Data.Length}");
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            foreach (var d in Enumerable.Reverse(t.Shape)) w.Write((ulong)d);
            w.Write(GgmlTypes.TryGetValue(t.DType, out var type) ? type : throw new ArgumentException($"tensor '{t.Name}': {t.DType} has no GGUF type"));
            w.Write((ulong)offset);
            offset = Align(offset + t.Data.Length, alignment);
        }
        Pad(w, alignment);
        foreach (var t in list)
        {
            w.Write(t.Data.Span);
            Pad(w, alignment);
        }
        w.Flush();
        return stream.ToArray();
    }

    public static void Write(string path, IEnumerable<KeyValuePair<string, object>> metadata, IEnumerable<Entry> tensors) =>
        File.WriteAllBytes(path, ToBytes(metadata, tensors));

    private static long Align(long n, long alignment) => (n + alignment - 1) / alignment * alignment;

    private static void Pad(BinaryWriter w, long alignment)
    {
        w.Flush();
        while (w.BaseStream.Position % alignment != 0) w.Write((byte)0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static GgufValueType TypeOf(Type t, string key) =>
        t == typeof(byte) ? GgufValueType.UInt8 : t == typeof(sbyte) ? GgufValueType.Int8
        : t == typeof(ushort) ? GgufValueType.UInt16 : t == typeof(short) ? GgufValueType.Int16
        : t == typeof(uint) ? GgufValueType.UInt32 : t == typeof(int) ? GgufValueType.Int32
        : t == typeof(float) ? GgufValueType.Float32 : t == typeof(bool) ? GgufValueType.Bool
        : t == typeof(string) ? GgufValueType.String : t == typeof(ulong) ? GgufValueType.UInt64
        : t == typeof(long) ? GgufValueType.Int64 : t == typeof(double) ? GgufValueType.Float64
        : t.IsArray ? GgufValueType.Array
        : throw new ArgumentException($"metadata '{key}': {t.Name} has no GGUF type");

    private static void WriteValue(BinaryWriter w, object value, string key, bool withType = true)
    {
        var type = TypeOf(value.GetType(), key);
        if (withType) w.Write((uint)type);
        switch (value)
        {
            case string s: WriteString(w, s); break;
            case bool b: w.Write((byte)(b ? 1 : 0)); break;
            case Array array:
                var element = array.GetType().GetElementType()!;
                // object[] holds nested arrays; an empty one is written as an empty array of uint8.
                var elementType = element == typeof(object)
                    ? array.Length > 0 ? TypeOf(array.GetValue(0)!.GetType(), key) : GgufValueType.UInt8
                    : TypeOf(element, key);
                w.Write((uint)elementType);
                w.Write((ulong)array.Length);
                foreach (var item in array) WriteValue(w, item!, key, withType: false);
                break;
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case float x: w.Write(x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case double x: w.Write(x); break;
        }
    }
}
