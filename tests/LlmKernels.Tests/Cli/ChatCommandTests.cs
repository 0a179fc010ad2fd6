using System.CommandLine;
using System.Diagnostics;
using System.Text.RegularExpressions;
using LlmKernels.Cli;
using LlmKernels.Models;

namespace LlmKernels.Tests.Cli;

/// <summary>`llmk chat` on the tiny preset: turns, /reset, /exit, the KV cache kept between turns, errors, Ctrl-C.</summary>
public class ChatCommandTests
{
    private sealed record Result(int ExitCode, string Out, string Err);

    private static Result Chat(string input, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var root = new RootCommand { ChatCommand.Create(CliConsole.Plain(output, error), new StringReader(input)) };
        int code = root.Parse(["chat", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        var result = new Result(code, output.ToString(), error.ToString());
        TestContext.Out.WriteLine($"llmk chat {string.Join(" ", args)} -> {code}\n--- stdout\n{result.Out}--- stderr\n{result.Err}");
        return result;
    }

    private static readonly Regex Turn = new(@"\[(\d+) tokens in .*prompt (\d+) tokens, (\d+) of them from the cache");

    [Test]
    public void TurnsReuseTheCacheAndResetStartsOver()
    {
        var result = Chat("Hello\nHow are you?\n/reset\nHello\n/exit\nnever read\n",
                          "--preset", "tiny-llama", "--backend", "cpu-reference", "--max-tokens", "5", "--temperature", "0", "--seed", "3");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Err);
        var turns = Turn.Matches(result.Err).Select(m => (Tokens: int.Parse(m.Groups[1].Value), Prompt: int.Parse(m.Groups[2].Value),
                                                           Cached: int.Parse(m.Groups[3].Value))).ToList();
        Assert.That(turns, Has.Count.EqualTo(3), "three answers; nothing after /exit");
        Assert.That(turns[0].Cached, Is.EqualTo(0));
        Assert.That(turns[1].Cached, Is.GreaterThanOrEqualTo(turns[0].Prompt - 1), "the second turn does not prefill the first again");
        Assert.That(turns[1].Prompt, Is.GreaterThan(turns[0].Prompt + turns[0].Tokens - 2));
        Assert.That(turns[2].Prompt, Is.EqualTo(turns[0].Prompt), "after /reset the conversation is the first turn again");
        Assert.That(turns[2].Cached, Is.EqualTo(0), "and the cache was emptied");
        Assert.That(result.Err, Does.Contain("a new conversation"));
        var answers = result.Out.Split(Environment.NewLine);
        Assert.That(answers[2], Is.EqualTo(answers[0]), "greedy: the same first answer after /reset");
    }

    [Test]
    public void AGgufFileChatsInItsOwnTemplateAsThePresetDoes()
    {
        // The preset as a GGUF file, its tokenizer and chat template in the metadata (tokenizer.chat_template):
        // the same greedy conversation as the preset, so the template, bos/eos and tokenizer came from the file.
        using var temp = new TempDirectory("llmk-chat-gguf");
        var directory = temp.Path;
        var config = TinyModels.Config("tiny-llama");
        var metadata = Models.GgufTokenizerTests.Metadata(System.Text.Encoding.UTF8.GetBytes(TinyModels.TokenizerJson()), "gpt2", "default")
            .Where(kv => kv.Key != "tokenizer.chat_template")
            .Append(new KeyValuePair<string, object>("tokenizer.chat_template", TinyModels.ChatTemplateSource)).ToList();
        string path = Path.Combine(directory, "tiny.gguf");
        using (var ctx = Context.CreateCpu())
            Models.GgufFixtures.Write(path, ctx, config, TinyModels.CreateWeights(config, 1234), extra: metadata);
        string[] common = ["--backend", "cpu-reference", "--max-tokens", "5", "--temperature", "0", "--seed", "3"];
        var fromGguf = Chat("Hello\nHow are you?\n/exit\n", ["--model", path, .. common]);
        var fromPreset = Chat("Hello\nHow are you?\n/exit\n", ["--preset", "tiny-llama", .. common]);
        Assert.That(fromGguf.ExitCode, Is.EqualTo(0), fromGguf.Err);
        Assert.That(fromGguf.Out, Is.Not.Empty);
        Assert.That(fromGguf.Out, Is.EqualTo(fromPreset.Out));
    }

    [Test]
    public void EndOfInputQuitsAndUnknownCommandsAreExplained()
    {
        var result = Chat("/frob\n", "--preset", "tiny-llama", "--max-tokens", "2");
        Assert.That(result.ExitCode, Is.EqualTo(0));
        Assert.That(result.Err, Does.Contain("unknown command /frob"));
        Assert.That(result.Out, Is.Empty);
    }

    [Test]
    public void ABadChatTemplateIsOneLineAndExitCodeOne()
    {
        using var temp = new TempDirectory("llmk-chat");
        string dir = temp.Path;
        var config = TinyModels.Config("tiny-llama");
        TinyModels.Save(dir, config, TinyModels.CreateWeights(config, 1), TinyModels.TokenizerJson());
        var result = Chat("hi\n", "--model", dir);
        Assert.That(result.ExitCode, Is.EqualTo(1));
        Assert.That(result.Err.Trim(), Does.StartWith("llmk: error: ").And.Contain("no chat template"));
        Assert.That(result.Err.Trim().Split('\n'), Has.Length.EqualTo(1));

        File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), "{% for m in messages %}{{ m.content }");
        result = Chat("hi\n", "--model", dir);
        Assert.That(result.ExitCode, Is.EqualTo(1));
        Assert.That(result.Err.Trim(), Does.StartWith("llmk: error: ").And.Contain("chat_template.jinja: chat_template: chat template syntax error"));
        Assert.That(result.Err.Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    [TestCase("--top-p", "0", "--top-p must be in (0, 1]")]
    [TestCase("--temperature", "-1", "--temperature must be 0 (greedy) or more")]
    [TestCase("--top-k", "-3", "--top-k must be 0 (all) or more")]
    [TestCase("--max-tokens", "0", "--max-tokens must be at least 1")]
    [TestCase("--context", "1", "--context must be at least 2")]
    public void BadSamplingOptionsAreRefusedBeforeAnythingLoads(string option, string value, string expected)
    {
        var result = Chat("hi\n", "--preset", "tiny-llama", option, value);
        Assert.That(result.ExitCode, Is.Not.EqualTo(0));
        Assert.That(result.Err, Does.Contain(expected));
        Assert.That(result.Err, Does.Not.Contain("loaded"));
    }

    [Test]
    public void ATurnThatOverflowsTheContextIsAnErrorLineAndTheChatGoesOn()
    {
        var result = Chat(new string('x', 300) + "\nhi\n", "--preset", "tiny-llama", "--context", "64", "--max-tokens", "2");
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Err);
        Assert.That(result.Err, Does.Contain("llmk: error: ").And.Contain("the context holds 64"));
        Assert.That(Turn.Matches(result.Err), Has.Count.EqualTo(1), "the next turn is answered");
    }

    [Test]
    [Platform("Linux,MacOsX")]
    public void CtrlCStopsTheAnswerNotTheProgram()
    {
        // The real program in its own process, sent SIGINT (what Ctrl-C sends) while it writes a long answer.
        string llmk = Path.Combine(AppContext.BaseDirectory, "llmk.dll");
        // The host that runs these tests (dotnet test sets DOTNET_HOST_PATH); a self-contained bundle has none.
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { } h && File.Exists(h) ? h
            : Environment.GetEnvironmentVariable("PATH")?.Split(Path.PathSeparator).Select(d => Path.Combine(d, "dotnet")).FirstOrDefault(File.Exists);
        if (host is null || !File.Exists(llmk)) Assert.Ignore("no dotnet host (or no llmk.dll) to run llmk in a process of its own");
        var start = new ProcessStartInfo(host, [llmk, "chat", "--preset", "tiny-llama", "--context", "200000", "--max-tokens", "150000",
                                                     "--temperature", "1", "--seed", "1", "--ignore-eos"])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var process = Process.Start(start)!;
        var err = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (err) err.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        process.StandardInput.WriteLine("Tell me everything");
        process.StandardInput.Flush();
        var buffer = new char[256];
        int read = process.StandardOutput.Read(buffer, 0, buffer.Length);   // the answer has started
        Assert.That(read, Is.GreaterThan(0));
        Process.Start("kill", ["-INT", process.Id.ToString()])!.WaitForExit();
        process.StandardInput.WriteLine("/exit");
        process.StandardInput.Flush();
        string rest = process.StandardOutput.ReadToEnd();
        Assert.That(process.WaitForExit(60_000), Is.True, "the program quits on /exit after the stopped answer");
        process.WaitForExit();
        TestContext.Out.WriteLine(err.ToString());
        Assert.That(process.ExitCode, Is.EqualTo(0));
        lock (err) Assert.That(err.ToString(), Does.Contain("[stopped after"));
        Assert.That(rest.Length + read, Is.LessThan(150000 * 4), "the answer did not run to its end");
    }
}
