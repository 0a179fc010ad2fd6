using System.CommandLine;

namespace LlmKernels.Cli;

/// <summary>`llmk`: verify the kernels, run, benchmark and inspect models. One file per command.</summary>
internal static class Program
{
    public static int Main(string[] args) => Run(args, CliConsole.Standard());

    /// <summary>Parses and runs one command line on <paramref name="io"/> (tests pass plain writers).</summary>
    public static int Run(string[] args, CliConsole io)
    {
        var root = new RootCommand("llmk: fast, verified LLM kernels for .NET");
        root.Subcommands.Add(VerifyCommand.Create(io));
        root.Subcommands.Add(GenerateCommand.Create(io));
        root.Subcommands.Add(BenchCommand.Create(io));
        root.Subcommands.Add(InspectCommand.Create(io));
        root.Subcommands.Add(InfoCommand.Create(io));
        root.Subcommands.Add(ChatCommand.Create(io));
        var parse = root.Parse(args);
        // A bad option value is a user error like any other: one line each, exit code 1 (no help page after it).
        if (parse.Errors.Count > 0 && args.Length > 0)
        {
            foreach (var error in parse.Errors) io.Error(error.Message);
            return 1;
        }
        // Help, and the error of a bare `llmk` with its help page, go to the same writers as everything else.
        return parse.Invoke(new InvocationConfiguration { Output = io.OutWriter, Error = io.Err.Profile.Out.Writer });
    }
}
