using NUnit.Framework;
using System.Text;
using LlmKernels.Models;
using LlmKernels.Models.Gguf;

namespace LlmKernels.Tests.Models;

/// <summary>
/// The GGUF reader: a file from <see cref="GgufWriter"/> reads back (metadata of every type, tensors with our
/// shapes, data where it was written), and each way a file can be malformed is a ModelFormatException naming the
/// file and what is wrong, never a crash or a huge allocation.
/// </summary>
public class GgufFileTests
{
    /// <summary>Little-endian bytes of a GGUF file written field by field, so each case can break exactly one thing.</summary>
    private sealed class Raw
    {
        private readonly MemoryStream _stream = new();
        private readonly BinaryWriter _w;
        public Raw() => _w = new BinaryWriter(_stream);
        public long Length { get { _w.Flush(); return _stream.Length; } }
        public Raw U32(uint v) { _w.Write(v); return this; }
        public Raw U64(ulong v) { _w.Write(v); return this; }
        public Raw Bytes(params byte[] b) { _w.Write(b); return this; }
        public Raw Str(string s) => StrBytes(Encoding.UTF8.GetBytes(s));
        public Raw StrBytes(byte[] b) { U64((ulong)b.Length); return Bytes(b); }
        public Raw KvU32(string key, uint v) => Str(key).U32((uint)GgufValueType.UInt32).U32(v);
        public Raw KvStr(string key, string v) => Str(key).U32((uint)GgufValueType.String).Str(v);
        public Raw Tensor(string name, uint type, ulong offset, params ulong[] ne)
        {
            Str(name).U32((uint)ne.Length);
            foreach (var d in ne) U64(d);
            return U32(type).U64(offset);
        }
        public Raw Pad(long alignment) { while (Length % alignment != 0) _w.Write((byte)0); return this; }
        public byte[] ToArray() { _w.Flush(); return _stream.ToArray(); }
    }

    private const uint F32 = 0, Q8_0 = 8;

    private static Raw Header(ulong tensors, ulong kvs, uint version = 3) => new Raw().U32(GgufFile.Magic).U32(version).U64(tensors).U64(kvs);

    /// <summary>A valid file: two f32 tensors of 4 x 8 floats (128 bytes each) at data offsets 0 and 128.</summary>
    private static byte[] Valid(Action<Raw>? extraKv = null, int extraKvs = 0, uint alignment = 32, uint type2 = F32, ulong offset2 = 128,
                                ulong ne0 = 8, string name2 = "b", long dataBytes = 256)
    {
        var r = Header(2, (ulong)(2 + extraKvs)).KvStr("general.architecture", "llama").KvU32("general.alignment", alignment);
        extraKv?.Invoke(r);
        r.Tensor("a", F32, 0, 8, 4).Tensor(name2, type2, offset2, ne0, 4).Pad(alignment);
        return r.Bytes(new byte[dataBytes]).ToArray();
    }

    private static byte[] With(byte[] bytes, int at, params byte[] patch)
    {
        var copy = (byte[])bytes.Clone();
        patch.CopyTo(copy, at);
        return copy;
    }

    [Test]
    public void ValidFileReadsBack()
    {
        var header = GgufFile.Parse(Valid(), "ok.gguf");
        Assert.That(header.Version, Is.EqualTo(3));
        Assert.That(header.Alignment, Is.EqualTo(32));
        Assert.That(header.Metadata["general.architecture"], Is.EqualTo("llama"));
        Assert.That(header.Tensors.Select(t => (t.Name, t.DType, string.Join("x", t.Shape))), Is.EqualTo(new[] { ("a", LlmkDtype.F32, "4x8"), ("b", LlmkDtype.F32, "4x8") }));
        Assert.That(header.Tensors[1].Offset, Is.EqualTo(header.DataStart + 128));
        Assert.That(header.DataStart % 32, Is.Zero);
    }

    [Test]
    public void WriterRoundTripsMetadataAndTensors()
    {
        var rng = TestSupport.Rng();
        var values = Enumerable.Range(0, 3 * 64).Select(_ => (float)rng.NextDouble()).ToArray();
        var metadata = new Dictionary<string, object>
        {
            ["u8"] = (byte)7, ["i8"] = (sbyte)-7, ["u16"] = (ushort)700, ["i16"] = (short)-700, ["u32"] = 70000u, ["i32"] = -70000,
            ["f32"] = 1.5f, ["bool"] = true, ["str"] = "héllo ▁", ["u64"] = 1UL << 40, ["i64"] = -(1L << 40), ["f64"] = Math.PI,
            ["strings"] = new[] { "a", "", "ü" }, ["floats"] = new[] { 1f, -2f }, ["nested"] = new object[] { new[] { 1, 2 }, new[] { 3 } },
            ["general.alignment"] = 64u,
        };
        var path = Path.Combine(Path.GetTempPath(), $"llmk-{Guid.NewGuid():N}.gguf");
        try
        {
            GgufWriter.Write(path, metadata, [GgufWriter.F32("w", values, 3, 64), GgufWriter.F32("n", values[..64], 64)]);
            using var file = GgufFile.Open(path);
            foreach (var (key, value) in metadata.Where(kv => kv.Key != "nested"))
                Assert.That(file.Metadata[key], Is.EqualTo(value), key);
            var nested = (object[])file.Metadata["nested"];
            Assert.That(nested[0], Is.EqualTo(new[] { 1, 2 }));
            Assert.That(nested[1], Is.EqualTo(new[] { 3 }));
            var w = file.Tensors[0];
            Assert.That(w.Shape, Is.EqualTo(new long[] { 3, 64 }));
            Assert.That(w.Offset % 64, Is.Zero);
            using var ctx = Context.CreateCpu();
            using var t = Tensor.FromPointer(ctx, file.GetPointer(w), w.DType, w.Shape, file);
            Assert.That(t.ToFloatArray(), Is.EqualTo(values));
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static IEnumerable<TestCaseData> Malformed()
    {
        TestCaseData Case(string name, byte[] bytes, params string[] mentions) => new TestCaseData(bytes, mentions).SetName(name);
        var valid = Valid();
        yield return Case("BadMagic", With(valid, 0, (byte)'G', (byte)'G', (byte)'M', (byte)'L'), "bad magic");
        yield return Case("Version0", With(valid, 4, 0, 0, 0, 0), "version 0 is not supported");
        yield return Case("Version99", With(valid, 4, 99, 0, 0, 0), "version 99 is not supported");
        yield return Case("Version1", With(valid, 4, 1, 0, 0, 0), "version 1", "32-bit counts");
        yield return Case("BigEndian", With(valid, 4, 0, 0, 0, 3), "big-endian");
        yield return Case("HugeTensorCount", Header(1UL << 60, 0).Bytes(new byte[64]).ToArray(), "1152921504606846976 tensor infos cannot fit");
        yield return Case("HugeMetadataCount", Header(0, 1UL << 60).Bytes(new byte[64]).ToArray(), "1152921504606846976 metadata entries cannot fit");
        yield return Case("HugeArrayCount", Header(0, 1).Str("tokenizer.ggml.tokens").U32((uint)GgufValueType.Array)
            .U32((uint)GgufValueType.String).U64(1UL << 60).Bytes(new byte[64]).ToArray(), "elements of metadata 'tokenizer.ggml.tokens' cannot fit");
        yield return Case("HugeNestedArrayCount", Header(0, 1).Str("n").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.Array).U64(1)
            .U32((uint)GgufValueType.Float64).U64(1UL << 61).Bytes(new byte[64]).ToArray(), "metadata 'n'[0]", "cannot fit");
        yield return Case("HugeStringLength", Header(0, 1).Str("k").U32((uint)GgufValueType.String).U64(ulong.MaxValue).ToArray(), "metadata 'k'", "truncated");
        yield return Case("ArraysNestedTooDeep", Enumerable.Range(0, 10).Aggregate(Header(0, 1).Str("deep").U32((uint)GgufValueType.Array),
            (r, _) => r.U32((uint)GgufValueType.Array).U64(1)).Bytes(new byte[64]).ToArray(), "metadata 'deep'", "nests arrays deeper than 8");
        yield return Case("UnknownValueType", Header(0, 1).Str("k").U32(13).Bytes(new byte[8]).ToArray(), "metadata 'k'", "unknown value type 13");
        yield return Case("UnknownArrayType", Header(0, 1).Str("k").U32((uint)GgufValueType.Array).U32(77).U64(1).Bytes(new byte[8]).ToArray(), "unknown value type 77");
        yield return Case("BoolOf2", Header(0, 1).Str("flag").U32((uint)GgufValueType.Bool).Bytes(2).ToArray(), "metadata 'flag'", "bool of value 2");
        yield return Case("InvalidUtf8Key", Header(0, 1).StrBytes([0x61, 0xC3, 0x28]).U32((uint)GgufValueType.UInt8).Bytes(0).ToArray(), "metadata entry 0: the key", "not valid UTF-8");
        yield return Case("InvalidUtf8Value", Header(0, 1).Str("general.name").U32((uint)GgufValueType.String).StrBytes([0xED, 0xA0, 0x80]).ToArray(), "metadata 'general.name'", "not valid UTF-8");
        yield return Case("InvalidUtf8TensorName", Header(1, 0).StrBytes([0xFF]).U32(1).U64(32).U32(F32).U64(0).Pad(32).Bytes(new byte[128]).ToArray(), "tensor info 0: the name", "not valid UTF-8");
        yield return Case("EmptyKey", Header(0, 1).Str("").U32((uint)GgufValueType.UInt8).Bytes(0).ToArray(), "empty key");
        yield return Case("DuplicateKey", Valid(r => r.KvU32("general.alignment", 32), 1), "metadata 'general.alignment' appears twice");
        yield return Case("AlignmentNotPowerOfTwo", Valid(alignment: 48), "'general.alignment' is 48", "power of two");
        yield return Case("AlignmentZero", Header(0, 1).KvU32("general.alignment", 0).ToArray(), "'general.alignment' is 0");
        yield return Case("AlignmentWrongType", Header(0, 1).Str("general.alignment").U32((uint)GgufValueType.Int32).U32(32).ToArray(), "'general.alignment' is 32 (Int32)");
        yield return Case("OffsetNotAligned", Valid(offset2: 136), "tensor 'b'", "offset 136 is not a multiple of the alignment (32)");
        yield return Case("OffsetOutsideFile", Valid(offset2: 1UL << 62), "tensor 'b'", "end past the end of the file");
        yield return Case("DataPastEnd", Valid(dataBytes: 200), "tensor 'b'", "128 bytes at data offset 128 end past the end");
        yield return Case("OverlappingTensors", Valid(offset2: 96 - 32), "tensor 'b'", "overlaps tensor 'a'");
        yield return Case("UnknownType", Valid(type2: 13), "tensor 'b'", "ggml type Q5_K (13)", "supported: F32, F16, Q4_0, Q8_0, Q4_K, Q6_K, BF16");
        yield return Case("TypeBeyondGgml", Valid(type2: 1000), "tensor 'b'", "ggml type type 1000 (1000)");
        yield return Case("RowNotWholeBlocks", Valid(type2: Q8_0, ne0: 8), "tensor 'b'", "ne[0] = 8 is not a multiple of the Q8_0 block (32)");
        yield return Case("DuplicateTensorName", Valid(name2: "a"), "tensor 'a' appears twice");
        yield return Case("Rank0", Header(1, 0).Str("t").U32(0).U32(F32).U64(0).ToArray(), "tensor 't'", "rank 0");
        yield return Case("Rank5", Header(1, 0).Tensor("t", F32, 0, 1, 1, 1, 1, 1).ToArray(), "tensor 't'", "rank 5");
        yield return Case("ZeroDimension", Header(1, 0).Tensor("t", F32, 0, 4, 0).ToArray(), "tensor 't'", "ne[1] is 0");
        yield return Case("ElementCountOverflow", Header(1, 0).Tensor("t", F32, 0, 1UL << 40, 1UL << 40).ToArray(), "tensor 't'", "more elements than 64 bits");
        yield return Case("ByteCountOverflow", Header(1, 0).Tensor("t", F32, 0, 1UL << 31, 1UL << 31).ToArray(), "tensor 't'", "overflow a 64-bit byte count");
        yield return Case("DataStartPastEnd", Header(1, 0).Tensor("t", F32, 0, 8).ToArray(), "data section would start at byte 64, past the end of the file");
    }

    [TestCaseSource(nameof(Malformed))]
    public void MalformedFileIsNamed(byte[] bytes, string[] mentions)
    {
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.Parse(bytes, "bad.gguf"))!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.StartWith("bad.gguf: "));
        foreach (var m in mentions) Assert.That(e.Message, Does.Contain(m));
    }

    [Test]
    public void TruncatedAtEveryByteIsNamed()
    {
        // Every prefix of a valid file: inside the header, metadata, tensor infos, padding and data.
        var valid = Valid(r => r.Str("tokens").U32((uint)GgufValueType.Array).U32((uint)GgufValueType.String).U64(2).Str("x").Str("yz"), 1);
        for (int length = 0; length < valid.Length; length++)
        {
            var e = Assert.Throws<ModelFormatException>(() => GgufFile.Parse(valid.AsSpan(0, length), "cut.gguf"), $"cut at {length}")!;
            Assert.That(e.Message, Does.StartWith("cut.gguf: ").And.Contain("truncated").Or.Contain("past the end").Or.Contain("cannot fit"), $"cut at {length}");
        }
        Assert.That(GgufFile.Parse(valid, "whole.gguf").Tensors, Has.Count.EqualTo(2));
    }

    [Test]
    public void OpenNamesTheFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"llmk-{Guid.NewGuid():N}.gguf");
        try
        {
            File.WriteAllBytes(path, [0x47, 0x47]);
            Assert.That(() => GgufFile.Open(path), Throws.TypeOf<ModelFormatException>().With.Message.StartWith(path + ": the file is 2 bytes"));
            File.WriteAllBytes(path, With(Valid(), 4, 99, 0, 0, 0));
            Assert.That(() => GgufFile.Open(path), Throws.TypeOf<ModelFormatException>().With.Message.StartWith(path + ": GGUF version 99"));
        }
        finally
        {
            File.Delete(path);
        }
        Assert.That(() => GgufFile.Open(path), Throws.TypeOf<ModelFormatException>().With.Message.Contain("no such file"));
    }
}
