using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using LlmKernels.Models;
using LlmKernels.Models.Gguf;
using LlmKernels.Models.Safetensors;
using LlmKernels.Models.Tokenization;

namespace LlmKernels.Tests.Models;

/// <summary>
/// Seeded mutation fuzzing of the model-file readers (safetensors, its shard index, config.json, tokenizer.json): each case's seed file is mutated (bits, bytes, ranges,
/// numbers, the safetensors length field) and read; every input must be accepted or refused with a
/// <see cref="ModelFormatException"/>, never anything else. Bounded in iterations and time; the seed is logged
/// (LLMK_TEST_SEED replays it) and failing inputs are saved. Another format is one more line in <see cref="Cases"/>.
/// </summary>
public class FuzzTests
{
    /// <summary>A reader under fuzzing: its format, the seed file and how to read an input (given as bytes and
    /// also written at a path, for readers that take files).</summary>
    public sealed record FuzzCase(string Format, string Seed, Func<byte[]> SeedBytes, Action<byte[], string> Read, bool LengthPrefixed = false)
    {
        public override string ToString() => $"{Format} from {Seed}";
    }

    private const int MaxIterations = 1500;
    private static readonly TimeSpan TimeBudget = TimeSpan.FromSeconds(4); // per case
    private static readonly TimeSpan InputTimeout = TimeSpan.FromSeconds(10);

    public static IEnumerable<FuzzCase> Cases()
    {
        yield return new FuzzCase("safetensors", "mixed dtypes", MixedSafetensors, ReadSafetensors, LengthPrefixed: true);
        yield return new FuzzCase(SafetensorsCheckpoint.IndexFileName, "one shard", () => Utf8(ShardIndex), ReadIndex);
        yield return new FuzzCase("config.json", "tiny-llama", () => Utf8(TinyModels.Config("tiny-llama").ToJson()), ReadConfig);
        yield return new FuzzCase("config.json", "tiny-mixtral", () => Utf8(TinyModels.Config("tiny-mixtral").ToJson()), ReadConfig);
        yield return new FuzzCase("config.json", "qwen2 with yarn", () => Utf8(Qwen2YarnConfig), ReadConfig);
        yield return new FuzzCase("config.json", "llama3 scaling", () => Utf8(Llama3Config), ReadConfig);
        yield return new FuzzCase("tokenizer.json", "tiny", () => Utf8(TinyModels.TokenizerJson()), ReadTokenizer);
        foreach (var fixture in new[] { "llama2", "qwen2", "metaspace" })
            yield return new FuzzCase("tokenizer.json", $"fixture {fixture}",
                () => File.ReadAllBytes(Path.Combine(TokenizerTests.FixtureDirectory(), fixture + ".tokenizer.json")), ReadTokenizer);
        yield return new FuzzCase("model.gguf", "tiny-llama, Q8_0 matrices", TinyGguf, ReadGguf);
        yield return new FuzzCase("model.gguf", "llama2 tokenizer metadata", TokenizerGguf, ReadGguf);
    }

    private static byte[] TinyGguf()
    {
        var config = TinyModels.Config("tiny-llama");
        using var ctx = Context.CreateCpu(1);
        return GgufWriter.ToBytes(GgufFixtures.Metadata(config),
                                  GgufFixtures.Tensors(ctx, config, TinyModels.CreateWeights(config, 3), LlmkDtype.Q8_0, permute: true));
    }

    private static byte[] TokenizerGguf() =>
        GgufWriter.ToBytes(GgufTokenizerTests.Metadata(
            File.ReadAllBytes(Path.Combine(TokenizerTests.FixtureDirectory(), "llama2.tokenizer.json")), "llama", null), []);

    /// <summary>A GGUF that opens gives its configuration (when it has the model keys), its tokenizer (when it has
    /// one, which must then run) and readable tensor bytes.</summary>
    private static void ReadGguf(byte[] bytes, string path)
    {
        using var file = GgufFile.Open(path);
        if (file.Metadata.ContainsKey("general.architecture")) _ = ModelConfig.FromGguf(file);
        if (file.Metadata.ContainsKey("tokenizer.ggml.model"))
        {
            var tokenizer = Tokenizer.FromGguf(file);
            _ = tokenizer.Decode(tokenizer.Encode("Hello, wörld! 123 <s> the\tend  ", addSpecialTokens: true));
        }
        foreach (var t in file.Tensors)
            System.Runtime.InteropServices.Marshal.Copy(file.GetPointer(t), new byte[t.ByteLength], 0, checked((int)t.ByteLength));
    }

    private static void ReadSafetensors(byte[] bytes, string path)
    {
        using var file = SafetensorsFile.Open(path);
        // What opened tiles the data section exactly, and each tensor's bytes are readable.
        long dataBytes = file.FileLength - 8 - (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (file.Tensors.Sum(t => t.ByteLength) != dataBytes)
            throw new InvalidOperationException($"opened, but its tensors do not cover the {dataBytes}-byte data section");
        foreach (var t in file.Tensors) _ = file.GetBytes(t).ToArray();
    }

    private const string Shard = "model-00001-of-00001.safetensors";

    private const string ShardIndex = $$$"""
        {"metadata":{"total_size":73},"weight_map":{"ids":"{{{Shard}}}","w":"{{{Shard}}}","h":"{{{Shard}}}","empty":"{{{Shard}}}","mask":"{{{Shard}}}"}}
        """;

    private static void ReadIndex(byte[] bytes, string path)
    {
        string shard = Path.Combine(Path.GetDirectoryName(path)!, Shard);
        if (!File.Exists(shard)) File.WriteAllBytes(shard, MixedSafetensors());
        SafetensorsCheckpoint.OpenIndex(path).Dispose();
    }

    private static void ReadConfig(byte[] bytes, string path) => ModelConfig.Load(path);

    private static void ReadTokenizer(byte[] bytes, string path)
    {
        var tokenizer = Tokenizer.FromFile(path);
        // A tokenizer that loads must also run.
        var ids = tokenizer.Encode("Hello, wörld! 123 <s> the\tend  ", addSpecialTokens: true);
        _ = tokenizer.Decode(ids);
    }

    [TestCaseSource(nameof(Cases))]
    public void MutatedFilesAreAcceptedOrRefusedWithAModelFormatException(FuzzCase fuzz)
    {
        int seed = TestSupport.SeedFor($"fuzz {fuzz}");
        var rng = new Random(seed);
        byte[] original = fuzz.SeedBytes();
        using var temp = new TempDirectory("llmk-fuzz");
        string dir = temp.Path;
        string path = Path.Combine(dir, fuzz.Format == "safetensors" ? SafetensorsCheckpoint.SingleFileName : fuzz.Format);
        var failures = new List<string>();
        int accepted = 0, refused = 0, iterations = 0;
        var clock = Stopwatch.StartNew();
        void Save(byte[] input, int iteration, out string saved) =>
            File.WriteAllBytes(saved = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"fuzz-{fuzz.Format}-{seed}-{iteration}.bin"), input);
        // The seed itself must load: otherwise every mutant is refused for the seed's fault.
        File.WriteAllBytes(path, original);
        Assert.DoesNotThrow(() => fuzz.Read(original, path), "the seed file loads");
        for (; iterations < MaxIterations && clock.Elapsed < TimeBudget && failures.Count < 5; iterations++)
        {
            byte[] input = Mutate(original, rng, fuzz.LengthPrefixed);
            File.WriteAllBytes(path, input);
            try
            {
                // One input that makes a reader hang (or allocate without end) must fail the test, not stall it.
                var read = Task.Run(() => fuzz.Read(input, path));
                if (!read.Wait(InputTimeout))
                {
                    Save(input, iterations, out string saved);
                    failures.Add($"iteration {iterations}: no answer within {InputTimeout.TotalSeconds} s (input saved to {saved})");
                    break;
                }
                accepted++;
            }
            catch (AggregateException e) when (e.InnerException is ModelFormatException)
            {
                refused++;
            }
            catch (AggregateException wrapped) when (wrapped.InnerException is { } e)
            {
                Save(input, iterations, out string saved);
                failures.Add($"iteration {iterations}: {e.GetType().Name}: {e.Message} (input saved to {saved})\n{e.StackTrace}");
            }
        }
        TestContext.Out.WriteLine($"{fuzz}: seed {seed}, {iterations} inputs in {clock.Elapsed.TotalSeconds:F1} s: {accepted} accepted, {refused} refused, {failures.Count} failures");
        Assert.That(failures, Is.Empty, $"seed {seed} (LLMK_TEST_SEED replays it):\n{string.Join("\n", failures)}");
        Assert.That(refused, Is.GreaterThan(0), "the mutations reach the checks");
    }

    // ---- mutations ------------------------------------------------------------------------------------------

    private static readonly byte[] InterestingBytes = [.. Utf8("\"{}[],:-.e09 \\\0"), 0x7F, 0x80, 0xC3, 0xFF];

    private static readonly string[] InterestingNumbers =
    [
        "0", "-1", "1", "2", "255", "65536", "2147483647", "2147483648", "-2147483649", "9223372036854775807",
        "18446744073709551616", "1e300", "-1e300", "1e-50", "0.5", "3.4e38", "4e38", "NaN", "1.0", "-0",
    ];

    /// <summary>One to three random edits of <paramref name="seed"/>.</summary>
    private static byte[] Mutate(byte[] seed, Random rng, bool lengthPrefixed)
    {
        var b = new List<byte>(seed);
        int edits = 1 + rng.Next(3);
        for (int e = 0; e < edits; e++)
        {
            if (b.Count == 0) b.Add((byte)'{');
            int at = rng.Next(b.Count);
            switch (rng.Next(lengthPrefixed ? 8 : 7))
            {
                case 0: b[at] ^= (byte)(1 << rng.Next(8)); break;
                case 1: b[at] = InterestingBytes[rng.Next(InterestingBytes.Length)]; break;
                case 2: b.RemoveRange(at, Math.Min(1 + rng.Next(16), b.Count - at)); break;
                case 3: b.InsertRange(at, b.GetRange(at, Math.Min(1 + rng.Next(16), b.Count - at))); break;
                case 4: b.InsertRange(at, Enumerable.Range(0, 1 + rng.Next(8)).Select(_ => (byte)rng.Next(256))); break;
                case 5: ReplaceNumber(b, at, rng); break;
                case 6: b.RemoveRange(at, b.Count - at); break;
                default:
                    // The safetensors header length: off by a little, or anything.
                    if (b.Count < 8) break;
                    var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(b);
                    ulong length = BinaryPrimitives.ReadUInt64LittleEndian(span);
                    length = rng.Next(4) == 0 ? (ulong)rng.NextInt64() : length + (ulong)(rng.Next(17) - 8);
                    BinaryPrimitives.WriteUInt64LittleEndian(span, length);
                    break;
            }
        }
        return [.. b];
    }

    /// <summary>Replaces the run of digits at or after <paramref name="at"/> with an interesting number.</summary>
    private static void ReplaceNumber(List<byte> b, int at, Random rng)
    {
        int start = at;
        while (start < b.Count && !char.IsAsciiDigit((char)b[start])) start++;
        if (start == b.Count) return;
        int end = start;
        while (end < b.Count && (char.IsAsciiDigit((char)b[end]) || b[end] is (byte)'.' or (byte)'e' or (byte)'-')) end++;
        b.RemoveRange(start, end - start);
        b.InsertRange(start, Utf8(InterestingNumbers[rng.Next(InterestingNumbers.Length)]));
    }

    // ---- seeds ---------------------------------------------------------------------------------------------

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static byte[] MixedSafetensors()
    {
        string path = Path.Combine(Path.GetTempPath(), $"llmk-fuzz-seed-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafetensorsWriter.Write(path,
            [
                new SafetensorsWriter.Entry("ids", SafetensorsDtype.I64, [3], new byte[24]),
                SafetensorsWriter.F32("w", [1, 2, 3, 4, 5, 6], 2, 3),
                new SafetensorsWriter.Entry("h", SafetensorsDtype.BF16, [5], new byte[10]),
                new SafetensorsWriter.Entry("empty", SafetensorsDtype.F16, [0, 2], Array.Empty<byte>()),
                new SafetensorsWriter.Entry("mask", SafetensorsDtype.U8, [3], new byte[] { 1, 0, 1 }),
            ], new Dictionary<string, string> { ["format"] = "pt" });
            return File.ReadAllBytes(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private const string Qwen2YarnConfig = """
        {"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":64,"intermediate_size":128,
         "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":300,
         "max_position_embeddings":4096,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"sliding_window":128,
         "use_sliding_window":true,"max_window_layers":1,"tie_word_embeddings":true,
         "rope_scaling":{"type":"yarn","factor":4.0,"original_max_position_embeddings":1024,"beta_fast":32,"beta_slow":1,
                         "mscale":1.0,"mscale_all_dim":0.0,"attention_factor":1.1},
         "bos_token_id":1,"eos_token_id":[2,3],"torch_dtype":"bfloat16"}
        """;

    private const string Llama3Config = """
        {"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":160,"num_hidden_layers":2,
         "num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,"vocab_size":300,"max_position_embeddings":8192,
         "rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,
                            "high_freq_factor":4.0,"original_max_position_embeddings":8192},
         "rms_norm_eps":1e-5,"attention_bias":false,"mlp_bias":false,"bos_token_id":1,"eos_token_id":2}
        """;
}
