using System.Buffers.Binary;
using System.Text.Json;

namespace LlmKernels.Models.Safetensors;

/// <summary>Writes safetensors files (tiny test models, the embedded default model saved to disk).</summary>
public static class SafetensorsWriter
{
    /// <summary>One tensor to write: raw little-endian bytes of <paramref name="Shape"/> in <paramref name="DType"/>.</summary>
    public sealed record Entry(string Name, SafetensorsDtype DType, long[] Shape, ReadOnlyMemory<byte> Data);

    /// <summary>An f32 tensor.</summary>
    public static Entry F32(string name, float[] values, params long[] shape)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return new Entry(name, SafetensorsDtype.F32, shape, bytes);
    }

    /// <summary>Writes the tensors in order, packed without gaps, header padded to 8 bytes as the reference does;
    /// each tensor must land aligned to its element size (the reader's rule).</summary>
    public static void Write(string path, IEnumerable<Entry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var kv in metadata) json.WriteString(kv.Key, kv.Value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in list)
            {
                long expected = t.Shape.Aggregate(1L, (a, b) => a * b) * SafetensorsFile.DtypeSize(t.DType);
                if (expected != t.Data.Length)
                    throw new ArgumentException($"tensor '{t.Name}': shape [{string.Join(", ", t.Shape)}] needs {expected} bytes, got {t.Data.Length}");
                if (offset % SafetensorsFile.DtypeSize(t.DType) != 0)
                    throw new ArgumentException($"tensor '{t.Name}' would start at offset {offset}, not aligned to its {SafetensorsFile.DtypeSize(t.DType)}-byte elements; put larger elements first");
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", SafetensorsFile.DtypeName(t.DType));
                json.WriteStartArray("shape");
                foreach (var d in t.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.Data.Length;
            }
            json.WriteEndObject();
        }
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');

        using var file = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        file.Write(length);
        header.Position = 0;
        header.CopyTo(file);
        foreach (var t in list) file.Write(t.Data.Span);
    }
}
