using LlmKernels.Cli;

namespace LlmKernels.Tests.Cli;

/// <summary>What one `llmk` command line gave.</summary>
internal sealed record CliResult(int ExitCode, string Out, string Err);

/// <summary>Runs `llmk` in-process through Program.Run on plain writers (no colors, no live display), logging what
/// it printed.</summary>
internal static class CliRunner
{
    public static CliResult Llmk(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, CliConsole.Plain(output, error));
        var result = new CliResult(code, output.ToString(), error.ToString());
        TestContext.Out.WriteLine($"llmk {string.Join(" ", args)} -> {code}\n--- stdout\n{result.Out}--- stderr\n{result.Err}");
        return result;
    }
}
