using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using LlmKernels.Models;
using LlmKernels.Models.Safetensors;

namespace LlmKernels.Tests.Cli;

/// <summary>
/// The malformed-input campaign, kept: broken model folders through `llmk generate` and `llmk inspect`, and bad
/// option values, as a careless or hostile user would give them. Each must end in exactly one "llmk: error:"
/// line and exit code 1, with nothing on stdout (no prompt echoed before the error), never a stack trace; or be
/// accepted where the command does not read what was broken (the case says why).
/// </summary>
public class BadInputCliTests
{
    private static CliResult Llmk(params string[] args) => CliRunner.Llmk(args);

    /// <summary>Asserts the one-line error: exit code 1, stdout empty, one "llmk: error:" line containing
    /// <paramref name="mention"/>, no stack trace. Notes before it (what was loaded) are allowed.</summary>
    private static void AssertOneLineError(CliResult r, string mention)
    {
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Multiple(() =>
        {
            Assert.That(r.ExitCode, Is.EqualTo(1), r.Err);
            Assert.That(r.Out, Is.Empty, "nothing printed before the error");
            Assert.That(lines.Count(l => l.StartsWith("llmk: error: ", StringComparison.Ordinal)), Is.EqualTo(1), r.Err);
            Assert.That(lines.LastOrDefault(), Does.StartWith("llmk: error: ").And.Contain(mention));
            Assert.That(r.Err, Does.Not.Contain("   at ").And.Not.Contain("Exception"), "no stack trace, no exception type");
        });
    }

    private string _dir = "";

    [SetUp]
    public void SaveTinyModel()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"llmk-bad-{Guid.NewGuid():N}");
        var config = TinyModels.Config("tiny-llama");
        TinyModels.Save(_dir, config, TinyModels.CreateWeights(config, 7), TinyModels.TokenizerJson());
    }

    [TearDown]
    public void Delete() => Directory.Delete(_dir, recursive: true);

    private static int Vocab => TinyModels.Config("tiny-llama").VocabSize;

    /// <summary>A way to break a model folder, what the error must say, and whether `inspect` (which reads
    /// config.json and the safetensors headers, never the tokenizer nor the weights' values) must refuse it.</summary>
    public sealed record Breakage(string Name, Action<string> Break, string Mention, bool InspectRefuses)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<TestCaseData> BrokenFolders()
    {
        Breakage B(string name, Action<string> breakIt, string mention, bool inspect = true) => new(name, breakIt, mention, inspect);
        // Special files instead of the small files: a plain read blocks forever or never ends.
        foreach (var file in new[] { "config.json", "tokenizer.json", SafetensorsCheckpoint.IndexFileName, SafetensorsCheckpoint.SingleFileName })
        {
            bool inspect = file != "tokenizer.json";
            yield return Case(B($"{file} is a FIFO", d => Fifo(Path.Combine(d, file)), "is a FIFO, not a regular file", inspect));
            yield return Case(B($"{file} is /dev/zero", d => Link(Path.Combine(d, file), "/dev/zero"), "is a character device", inspect));
        }
        // Text that is not text.
        yield return Case(B("config.json string with invalid UTF-8", d => AppendField(d, "config.json", "\"note\":\"", [0xC3, 0x28], "\""), "not valid UTF-8"));
        yield return Case(B("tokenizer.json string with invalid UTF-8", d => AppendField(d, "tokenizer.json", "\"note\":\"", [0xFF], "\""), "not valid UTF-8", false));
        yield return Case(B("config.json unpaired surrogate", d => AppendField(d, "config.json", "\"note\":\"\\ud800\"", [], ""), "not valid Unicode"));
        yield return Case(B("config.json truncated", d => File.WriteAllText(Path.Combine(d, "config.json"), "{\"model_type\":"), "not valid JSON"));
        // Values that are finite doubles but not finite floats, and relations the formulas divide by.
        yield return Case(B("rope_theta 1e300", d => EditConfig(d, c => c["rope_theta"] = 1e300), "'rope_theta' is 1E+300, beyond the single-precision range"));
        yield return Case(B("rope factor 1e300", d => EditConfig(d, c => c["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 1e300 }),
                            "'rope_scaling.factor' is 1E+300, beyond the single-precision range"));
        yield return Case(B("llama3 low_freq_factor == high_freq_factor", d => EditConfig(d, c => c["rope_scaling"] = new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = 8, ["low_freq_factor"] = 2, ["high_freq_factor"] = 2, ["original_max_position_embeddings"] = 64,
        }), "high_freq_factor (2) must be greater than params->low_freq_factor (2)", inspect: false)); // inspect never computes RoPE
        yield return Case(B("rms_norm_eps 1e-50", d => EditConfig(d, c => c["rms_norm_eps"] = 1e-50), "'rms_norm_eps' is 1E-50, expected > 0 in single precision"));
        yield return Case(B("bos_token_id at vocab_size", d => EditConfig(d, c => c["bos_token_id"] = Vocab), $"id {Vocab} is not below vocab_size ({Vocab})"));
        yield return Case(B("eos_token_id list past vocab_size", d => EditConfig(d, c => c["eos_token_id"] = new JsonArray(1, Vocab + 10)), $"id {Vocab + 10} is not below vocab_size"));
        // Tokenizers that do not fit the model.
        yield return Case(B("tokenizer with an empty vocabulary", d => EditTokenizer(d, t => { t["model"]!["vocab"] = new JsonObject(); t["model"]!["merges"] = new JsonArray(); }),
                            "'model.vocab' is empty", false));
        yield return Case(B("added token id past vocab_size", d => EditTokenizer(d, t => t["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = Vocab + 3, ["content"] = "<extra>", ["special"] = true })),
                            $"added token '<extra>' has id {Vocab + 3}, not below the model's vocab_size ({Vocab})", false));
        // Safetensors files that break the format's layout rules.
        yield return Case(B("safetensors with a trailing byte", d => File.AppendAllText(Path.Combine(d, SafetensorsCheckpoint.SingleFileName), "x"), "1 trailing bytes"));
        yield return Case(B("safetensors header length one byte short", d => ShiftHeaderLength(d, -1), "model.safetensors"));
        yield return Case(B("safetensors header length one byte long", d => ShiftHeaderLength(d, +1), "model.safetensors"));
        yield return Case(B("safetensors tensor missing from the header (a gap)", d => RewriteSafetensors(d, (h, data) =>
        {
            h.Remove("model.layers.0.input_layernorm.weight");
            return data;
        }), "belong to no tensor"));
        yield return Case(B("safetensors f32 tensors at odd offsets", d => RewriteSafetensors(d, (h, data) =>
        {
            foreach (var (name, entry) in h.Where(kv => kv.Key != "__metadata__").ToList())
            {
                var offsets = entry!["data_offsets"]!.AsArray();
                entry["data_offsets"] = new JsonArray((long)offsets[0]! + 1, (long)offsets[1]! + 1);
            }
            h["pad"] = new JsonObject { ["dtype"] = "U8", ["shape"] = new JsonArray(1), ["data_offsets"] = new JsonArray(0, 1) };
            return [0, .. data];
        }), "not a multiple of 4 as F32 needs"));
        // Weights whose values make the logits NaN: the file is well formed, so inspect accepts it.
        yield return Case(B("NaN weights", d => RewriteSafetensors(d, (h, data) =>
        {
            var offsets = h["model.norm.weight"]!["data_offsets"]!.AsArray();
            for (long i = (long)offsets[0]!; i < (long)offsets[1]!; i += 4) BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan((int)i), float.NaN);
            return data;
        }), "non-finite logit (NaN) at step 0", false));

        static TestCaseData Case(Breakage b) => new TestCaseData(b).SetName(b.Name);
    }

    [TestCaseSource(nameof(BrokenFolders))]
    public void ABrokenModelFolderIsOneLineFromGenerateAndInspect(Breakage breakage)
    {
        if (!OperatingSystem.IsLinux() && (breakage.Name.Contains("FIFO") || breakage.Name.Contains("/dev/zero")))
            Assert.Ignore("FIFOs and /dev/zero are made the Linux way");
        breakage.Break(_dir);
        AssertOneLineError(Run(() => Llmk("generate", "--model", _dir, "--backend", "cpu", "--max-tokens", "2", "--temperature", "0")), breakage.Mention);
        var inspect = Run(() => Llmk("inspect", "--model", _dir));
        if (breakage.InspectRefuses)
            AssertOneLineError(inspect, breakage.Mention);
        else
            Assert.That(inspect.ExitCode, Is.EqualTo(0), "inspect does not read what was broken: " + inspect.Err);
    }

    /// <summary>Runs a command on another thread so that a hang fails the test instead of stalling the run.</summary>
    private static CliResult Run(Func<CliResult> command)
    {
        var task = Task.Run(command);
        Assert.That(Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(60))).Result, Is.SameAs(task), "the command did not return");
        return task.Result;
    }

    [Test]
    public void APromptLongerThanTheModelsPositionsIsRefusedBeforeItIsEchoed()
    {
        string prompt = string.Concat(Enumerable.Repeat("the ", 600)); // at least 600 tokens; the model has 512 positions
        AssertOneLineError(Llmk("generate", "--model", _dir, "--backend", "cpu", "--prompt", prompt, "--max-tokens", "2"),
                           "more than the model's max_position_embeddings (512)");
    }

    public static IEnumerable<TestCaseData> BadOptions()
    {
        TestCaseData Case(string mention, params string[] args) => new TestCaseData(args, mention).SetName(string.Join(" ", args));
        yield return Case("--temperature is -1; expected a finite value >= 0 (0 is greedy)", "generate", "--temperature", "-1");
        yield return Case("--temperature is NaN; expected a finite value >= 0", "generate", "--temperature", "NaN");
        yield return Case("--top-p is 0; expected a value in (0, 1]", "generate", "--top-p", "0");
        yield return Case("--top-p is 1.5; expected a value in (0, 1]", "generate", "--top-p", "1.5");
        yield return Case("--top-k is -1; expected 0 (all tokens) or more", "generate", "--top-k", "-1");
        yield return Case("--seed: 'abc' is not an integer", "generate", "--seed", "abc");
        yield return Case("--seed: 'abc' is not an integer", "verify", "--seed", "abc");
        yield return Case("--seed: '1.5' is not an integer", "verify", "--kernels-only", "--seed", "1.5");
        yield return Case("--kernel nonsense matches no kernel; kernels: ", "verify", "--kernel", "nonsense");
        yield return Case("--tolerance: 'x' is not a number", "verify", "--tolerance", "x");
        yield return Case("--tolerance is -1; expected a bound > 0", "verify", "--tolerance", "-1");
        yield return Case("--context: 'many' is not an integer", "inspect", "--context", "many");
        yield return Case("--context is 0; expected at least 1", "inspect", "--context", "0");
        yield return Case("--threads 100000: llmk_context_create_cpu: num_threads = 100000 is more than", "generate", "--threads", "100000");
        yield return Case("--threads 2147483647: llmk_context_create_cpu: num_threads = 2147483647 is more than", "bench", "--threads", "2147483647");
        yield return Case("--threads must be 0 (one per physical core) or more", "generate", "--threads", "-1");
        yield return Case("--max-tokens is 0; expected at least 1", "generate", "--max-tokens", "0");
    }

    [TestCaseSource(nameof(BadOptions))]
    public void ABadOptionValueIsOneLine(string[] args, string mention) => AssertOneLineError(Llmk(args), mention);

    // ---- ways to break a folder ----------------------------------------------------------------------------

    private static void Fifo(string path)
    {
        File.Delete(path);
        TestSupport.MakeFifo(path);
    }

    private static void Link(string path, string target)
    {
        File.Delete(path);
        File.CreateSymbolicLink(path, target);
    }

    /// <summary>Appends a field to the root object of a JSON file, its raw bytes given (they may be invalid).</summary>
    private static void AppendField(string dir, string file, string before, byte[] raw, string after)
    {
        string path = Path.Combine(dir, file);
        string json = File.ReadAllText(path);
        json = json[..json.LastIndexOf('}')] + ",";
        File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes(json + before), .. raw, .. Encoding.UTF8.GetBytes(after + "}")]);
    }

    private static void EditJson(string path, Action<JsonObject> edit)
    {
        var node = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(node);
        File.WriteAllText(path, node.ToJsonString());
    }

    private static void EditConfig(string dir, Action<JsonObject> edit) => EditJson(Path.Combine(dir, "config.json"), edit);

    private static void EditTokenizer(string dir, Action<JsonObject> edit) => EditJson(Path.Combine(dir, "tokenizer.json"), edit);

    private static void ShiftHeaderLength(string dir, int by)
    {
        string path = Path.Combine(dir, SafetensorsCheckpoint.SingleFileName);
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)((long)BinaryPrimitives.ReadUInt64LittleEndian(bytes) + by));
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Rewrites model.safetensors from an edited header and data section (header padded to 8 bytes).</summary>
    private static void RewriteSafetensors(string dir, Func<JsonObject, byte[], byte[]> edit)
    {
        string path = Path.Combine(dir, SafetensorsCheckpoint.SingleFileName);
        var bytes = File.ReadAllBytes(path);
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(bytes.AsSpan(8, headerLength))!.AsObject();
        var data = edit(header, bytes[(8 + headerLength)..]);
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        var padded = new byte[(json.Length + 7) / 8 * 8];
        padded.AsSpan().Fill((byte)' ');
        json.CopyTo(padded, 0);
        var file = new byte[8 + padded.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)padded.Length);
        padded.CopyTo(file, 8);
        data.CopyTo(file, 8 + padded.Length);
        File.WriteAllBytes(path, file);
    }
}
