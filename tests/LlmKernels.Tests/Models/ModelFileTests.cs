using System.Text;
using LlmKernels.Models;
using LlmKernels.Models.Safetensors;
using LlmKernels.Models.Tokenization;

namespace LlmKernels.Tests.Models;

/// <summary>
/// Every reader of a model file goes through <see cref="ModelFile"/>: a FIFO, a device, a directory or a missing
/// file in place of a model file is a <see cref="ModelFormatException"/> naming it, never a hang (a FIFO blocks a
/// plain read forever) or an endless read (/dev/zero).
/// </summary>
public class ModelFileTests
{
    private string _dir = "";

    [SetUp]
    public void CreateDirectory() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "llmk-mf-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    /// <summary>Each reader of a model's files, by the file name it reads.</summary>
    private static readonly (string File, Action<string> Read)[] Readers =
    [
        ("config.json", path => ModelConfig.Load(path)),
        ("tokenizer.json", path => Tokenizer.FromFile(path)),
        (SafetensorsCheckpoint.IndexFileName, path => SafetensorsCheckpoint.OpenIndex(path).Dispose()),
        (SafetensorsCheckpoint.SingleFileName, path => SafetensorsFile.Open(path).Dispose()),
    ];

    public static IEnumerable<TestCaseData> NonRegularFiles() =>
        from reader in Readers.Select(r => r.File)
        from kind in new[] { "fifo", "character device", "directory", "missing" }
        select new TestCaseData(reader, kind).SetName($"{reader} as a {kind}");

    [TestCaseSource(nameof(NonRegularFiles))]
    public void ANonRegularFileIsRefusedWithoutBlocking(string file, string kind)
    {
        string path = Path.Combine(_dir, file);
        string expected = Make(path, kind);
        var read = Readers.Single(r => r.File == file).Read;
        // A hang fails the test instead of the run.
        var task = Task.Run(() => read(path));
        Assert.That(Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(20))).Result, Is.SameAs(task), $"reading {kind} {path} did not return");
        var e = task.Exception?.InnerException;
        Assert.That(e, Is.InstanceOf<ModelFormatException>(), e?.ToString() ?? "no exception");
        TestContext.Out.WriteLine(e!.Message);
        Assert.That(e.Message, Does.StartWith(path).And.Contain(expected));
        if (kind == "fifo") File.Delete(path); // nothing ever opened it for writing
    }

    /// <summary>Makes path a file of kind; returns what the message must say.</summary>
    private static string Make(string path, string kind)
    {
        switch (kind)
        {
            case "fifo":
                TestSupport.MakeFifo(path);
                return "is a FIFO, not a regular file";
            case "character device":
                if (!OperatingSystem.IsLinux()) Assert.Ignore("/dev/zero is Linux's");
                File.CreateSymbolicLink(path, "/dev/zero");
                return "is a character device, not a regular file";
            case "directory":
                Directory.CreateDirectory(path);
                return "is a directory, not a regular file";
            default:
                return "no such file";
        }
    }

    [Test]
    public void ASmallFileIsReadUpToItsCap()
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllBytes(path, new byte[100]);
        Assert.That(ModelFile.ReadSmallFile(path, maxBytes: 100), Has.Length.EqualTo(100));
        File.WriteAllBytes(path, new byte[101]);
        var e = Assert.Throws<ModelFormatException>(() => ModelFile.ReadSmallFile(path, maxBytes: 100))!;
        Assert.That(e.Message, Is.EqualTo($"{path}: larger than 100 bytes, the limit for this file"));
    }

    [Test]
    public void ASymlinkToARegularFileIsFollowed()
    {
        // The Hugging Face cache links each file of a snapshot to a blob.
        string blob = Path.Combine(_dir, "blob");
        File.WriteAllText(blob, TinyModels.Config("tiny-llama").ToJson());
        string link = Path.Combine(_dir, "config.json");
        File.CreateSymbolicLink(link, blob);
        Assert.That(ModelConfig.Load(link).HiddenSize, Is.EqualTo(TinyModels.Config("tiny-llama").HiddenSize));
    }

    /// <summary>Strings that System.Text.Json parses but cannot decode later: invalid UTF-8 bytes inside a string
    /// and an unpaired surrogate escape, in a value and in a property name.</summary>
    public static IEnumerable<TestCaseData> BadStrings()
    {
        byte[] Bytes(string before, byte[] middle, string after) => [.. Encoding.UTF8.GetBytes(before), .. middle, .. Encoding.UTF8.GetBytes(after)];
        static string Open(string json) => json[..json.LastIndexOf('}')]; // the root object, not yet closed
        string config = Open(TinyModels.Config("tiny-llama").ToJson());
        string tokenizer = Open(TinyModels.TokenizerJson());
        foreach (var (name, json) in new[] { ("config.json", config), ("tokenizer.json", tokenizer) })
        {
            yield return new TestCaseData(name, Bytes(json + ",\"note\":\"fine\"}", [], ""), null).SetName($"{name} with a clean extra string (control)");
            yield return new TestCaseData(name, Bytes(json + ",\"note\":\"", [0xC3, 0x28], "\"}"), "not valid UTF-8").SetName($"{name} with invalid UTF-8 in a string");
            yield return new TestCaseData(name, Bytes(json + ",\"", [0xFF], "\":1}"), "not valid UTF-8").SetName($"{name} with invalid UTF-8 in a name");
            yield return new TestCaseData(name, Bytes(json + ",\"note\":\"\\ud800\"}", [], ""), "not valid Unicode").SetName($"{name} with an unpaired surrogate");
            yield return new TestCaseData(name, Bytes(json + ",\"\\udc00x\":1}", [], ""), "not valid Unicode").SetName($"{name} with an unpaired surrogate in a name");
        }
    }

    [TestCaseSource(nameof(BadStrings))]
    public void StringsThatCannotBeDecodedAreRefusedAtLoad(string file, byte[] bytes, string? mention)
    {
        string path = Path.Combine(_dir, file);
        File.WriteAllBytes(path, bytes);
        TestDelegate load = file == "config.json" ? () => ModelConfig.Load(path) : () => Tokenizer.FromFile(path);
        // The control case (the same file with a clean string) loads, so each refusal is about its string.
        if (mention is null)
        {
            Assert.DoesNotThrow(load);
            return;
        }
        var e = Assert.Throws<ModelFormatException>(load)!;
        TestContext.Out.WriteLine(e.Message);
        Assert.That(e.Message, Does.StartWith(path).And.Contain(mention));
    }
}
