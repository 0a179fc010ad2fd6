using NUnit.Framework;
using System.Buffers.Binary;
using System.Text;
using LlmKernels.Models;
using LlmKernels.Models.Safetensors;

namespace LlmKernels.Tests.Models;

public class SafetensorsTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "llmk-st-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    /// <summary>A file with <paramref name="header"/> as its JSON and <paramref name="dataBytes"/> bytes of data; the
    /// header padded with spaces to 8 bytes as writers do (so the data section starts aligned), unless its length is
    /// declared.</summary>
    private string WriteRaw(string header, int dataBytes = 64, ulong? declaredLength = null, byte[]? headerBytes = null)
    {
        var json = headerBytes ?? Encoding.UTF8.GetBytes(declaredLength is null ? header.PadRight((header.Length + 7) / 8 * 8) : header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)json.Length);
        json.CopyTo(bytes, 8);
        string path = Path.Combine(_dir, "model.safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Test]
    public void WrittenTensorsReadBackWithoutCopy()
    {
        var rng = TestSupport.Rng();
        var f32 = Enumerable.Range(0, 15).Select(_ => (float)rng.NextDouble()).ToArray();
        var raw16 = new byte[2 * 7 * 2];
        rng.NextBytes(raw16);
        var i64 = new byte[8 * 3];
        rng.NextBytes(i64);
        string path = Path.Combine(_dir, "model.safetensors");
        SafetensorsWriter.Write(path,
        [
            SafetensorsWriter.F32("a.weight", f32, 3, 5),
            new SafetensorsWriter.Entry("b.bf16", SafetensorsDtype.BF16, [2, 7], raw16),
            new SafetensorsWriter.Entry("empty", SafetensorsDtype.F16, [0, 4], Array.Empty<byte>()),
            new SafetensorsWriter.Entry("ids", SafetensorsDtype.I64, [3], i64),
        ], new Dictionary<string, string> { ["format"] = "pt" });

        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
        Assert.That(file.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a.weight", "b.bf16", "empty", "ids" }));
        var a = file.GetTensor("a.weight");
        Assert.That(a.DType, Is.EqualTo(SafetensorsDtype.F32));
        Assert.That(a.Shape, Is.EqualTo(new long[] { 3, 5 }));
        var readBack = new float[15];
        for (int i = 0; i < 15; i++) readBack[i] = BinaryPrimitives.ReadSingleLittleEndian(file.GetBytes(a)[(i * 4)..]);
        Assert.That(readBack, Is.EqualTo(f32));
        Assert.That(file.GetBytes(file.GetTensor("b.bf16")).ToArray(), Is.EqualTo(raw16));
        Assert.That(file.GetBytes(file.GetTensor("ids")).ToArray(), Is.EqualTo(i64));
        Assert.That(file.GetTensor("empty").ByteLength, Is.Zero);
        // Pointers are into the mapping at the data offsets: b starts right after a's 60 bytes.
        Assert.That(file.GetPointer(file.GetTensor("b.bf16")) - file.GetPointer(a), Is.EqualTo((nint)60));
        var missing = Assert.Throws<ModelFormatException>(() => file.GetTensor("nope"))!;
        Assert.That(missing.Message, Does.Contain(path).And.Contain("'nope'"));
    }

    /// <summary>Malformed files: each a header (and data size) and what the message must say.</summary>
    public static IEnumerable<TestCaseData> MalformedHeaders()
    {
        TestCaseData Case(string name, string header, int data, params string[] mentions) =>
            new TestCaseData(header, data, mentions).SetName("Rejects_" + name);
        yield return Case("UnknownDtype", """{"w":{"dtype":"F128","shape":[2],"data_offsets":[0,32]}}""", 32, "tensor 'w'", "unknown dtype 'F128'");
        yield return Case("MissingDtype", """{"w":{"shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "missing 'dtype'");
        yield return Case("DtypeNotString", """{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "'dtype'", "expected a string");
        yield return Case("MissingShape", """{"w":{"dtype":"F32","data_offsets":[0,8]}}""", 8, "tensor 'w'", "missing 'shape'");
        yield return Case("NegativeDim", """{"w":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "shape[1] is -2");
        yield return Case("FractionalDim", """{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "shape[0] is 2.5");
        yield return Case("ShapeNotArray", """{"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}""", 8, "tensor 'w'", "'shape'");
        yield return Case("ElementCountOverflow", """{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "more elements than 64 bits");
        yield return Case("ByteCountOverflow", """{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "overflow a 64-bit byte count");
        yield return Case("SizeMismatch", """{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}""", 24, "tensor 'w'", "needs 24 bytes", "span 20");
        yield return Case("MissingOffsets", """{"w":{"dtype":"F32","shape":[2]}}""", 8, "tensor 'w'", "missing 'data_offsets'");
        yield return Case("OffsetsNotPair", """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}}""", 8, "tensor 'w'", "expected [begin, end]");
        yield return Case("NegativeOffset", """{"w":{"dtype":"F32","shape":[0],"data_offsets":[-4,0]}}""", 8, "tensor 'w'", "begin is -4");
        yield return Case("BeginAfterEnd", """{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}""", 8, "tensor 'w'", "begin > end");
        yield return Case("PastDataSection", """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "tensor 'w'", "past the data section (8 bytes)");
        yield return Case("Overlap", """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}""", 24, "tensor 'b'", "overlap tensor 'a'");
        yield return Case("DuplicateName", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "'w' appears twice");
        yield return Case("EntryNotObject", """{"w":[1,2]}""", 8, "tensor 'w'", "expected an object");
        yield return Case("MetadataNotStrings", """{"__metadata__":{"format":1}}""", 0, "__metadata__", "'format'", "expected a string");
        yield return Case("TruncatedJson", """{"w":{"dtype":"F32",""", 8, "header: not valid JSON");
        yield return Case("NotAnObject", """["w"]""", 8, "does not start with '{'");
        // The tensors must tile the data section: no gap, no trailing byte; each aligned to its element size.
        yield return Case("Gap", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12, "tensor 'b'", "leave a gap: bytes [4, 8)", "after tensor 'a'");
        yield return Case("GapAtStart", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "tensor 'w'", "bytes [0, 4) of the data section belong to no tensor");
        yield return Case("TrailingBytes", """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 9, "the data section is 9 bytes but its tensors end at byte 8: 1 trailing bytes");
        yield return Case("DataWithoutTensors", """{}""", 8, "the data section is 8 bytes but its tensors end at byte 0");
        yield return Case("MisalignedF32", """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}}""", 5, "tensor 'b'", "not a multiple of 4 as F32 needs");
        yield return Case("MisalignedBF16", """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[1,3]}}""", 3, "tensor 'b'", "not a multiple of 2 as BF16 needs");
    }

    [TestCaseSource(nameof(MalformedHeaders))]
    public void MalformedHeaderIsRejectedWithItsFault(string header, int dataBytes, string[] mentions)
    {
        string path = WriteRaw(header, dataBytes);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.StartWith(path));
        foreach (var m in mentions) Assert.That(e.Message, Does.Contain(m));
    }

    [Test]
    public void InvalidUtf8HeaderIsRejected()
    {
        string path = WriteRaw("", headerBytes: [(byte)'{', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)':', (byte)'1', (byte)'}']);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("the header is not valid UTF-8 (invalid byte at offset 2)"));
    }

    [TestCase(SafetensorsDtype.F32, "not a multiple of 4 as F32 needs")]
    [TestCase(SafetensorsDtype.U8, "1 trailing bytes")]
    public void HeaderLengthOneByteShortIsRejected(SafetensorsDtype dtype, string mention)
    {
        // Before the tiling rule, the header lost a padding space, every weight shifted by one byte and the file
        // loaded.
        string path = Path.Combine(_dir, "model.safetensors");
        SafetensorsWriter.Write(path, [new SafetensorsWriter.Entry("w", dtype, [4], new byte[4 * SafetensorsFile.DtypeSize(dtype)])]);
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes[8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes) - 1], Is.EqualTo((byte)' '), "the header ends in padding");
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, BinaryPrimitives.ReadUInt64LittleEndian(bytes) - 1);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain(mention));
    }

    [TestCase(0)]
    [TestCase(7)]
    public void FileShorterThanTheLengthFieldIsRejected(int length)
    {
        string path = Path.Combine(_dir, "short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain(path).And.Contain($"is {length} bytes").And.Contain("8-byte header length"));
    }

    [Test]
    public void HeaderLengthPastTheFileIsRejected()
    {
        string path = WriteRaw("{}", dataBytes: 0, declaredLength: 1000);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain("header length 1000 does not fit in the file (10 bytes"));
    }

    [Test]
    public void HugeHeaderLengthIsRejected()
    {
        string path = WriteRaw("{}", dataBytes: 0, declaredLength: ulong.MaxValue);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain($"header length {ulong.MaxValue} exceeds the 100000000-byte limit"));
    }

    [Test]
    public void MissingFileIsAModelFormatException()
    {
        string path = Path.Combine(_dir, "absent.safetensors");
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.StartWith(path));
    }

    private void WriteShards()
    {
        SafetensorsWriter.Write(Path.Combine(_dir, "model-00001-of-00002.safetensors"),
            [SafetensorsWriter.F32("a", [1, 2], 2), SafetensorsWriter.F32("b", [3], 1)]);
        SafetensorsWriter.Write(Path.Combine(_dir, "model-00002-of-00002.safetensors"),
            [SafetensorsWriter.F32("c", [4, 5, 6], 3)]);
    }

    private void WriteIndex(string weightMap) =>
        File.WriteAllText(Path.Combine(_dir, SafetensorsCheckpoint.IndexFileName),
                         "{\"metadata\":{\"total_size\":24},\"weight_map\":{" + weightMap + "}}");

    [Test]
    public void ShardedCheckpointOpensEachShardOnce()
    {
        WriteShards();
        WriteIndex("""
            "a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"
            """);
        using var checkpoint = SafetensorsCheckpoint.Open(_dir);
        Assert.That(checkpoint.Files, Has.Count.EqualTo(2));
        Assert.That(checkpoint.TensorNames, Is.EquivalentTo(new[] { "a", "b", "c" }));
        var (file, info) = checkpoint.Get("c");
        Assert.That(file.Path, Does.EndWith("model-00002-of-00002.safetensors"));
        Assert.That(info.Shape, Is.EqualTo(new long[] { 3 }));
        var e = Assert.Throws<ModelFormatException>(() => checkpoint.Get("d"))!;
        Assert.That(e.Message, Does.Contain("no tensor 'd'"));
    }

    [Test]
    public void IndexNamingATensorItsShardLacksIsRejected()
    {
        WriteShards();
        WriteIndex("""
            "a":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"
            """);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(_dir).Dispose())!;
        Assert.That(e.Message, Does.Contain("tensor 'c'").And.Contain("model-00001-of-00002.safetensors, which has no such tensor"));
    }

    [Test]
    public void IndexPointingOutsideItsDirectoryIsRejected()
    {
        WriteShards();
        WriteIndex("""
            "a":"../elsewhere.safetensors"
            """);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(_dir).Dispose())!;
        Assert.That(e.Message, Does.Contain("weight_map['a']").And.Contain("expected a file name in the same directory"));
    }

    [Test]
    public void IndexWithMissingShardIsRejected()
    {
        WriteIndex("""
            "a":"model-00009-of-00009.safetensors"
            """);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsCheckpoint.Open(_dir).Dispose())!;
        Assert.That(e.Message, Does.Contain("model-00009-of-00009.safetensors"));
    }
}
