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
        // Help and parse errors go to the same writers as everything else.
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = io.OutWriter, Error = io.Err.Profile.Out.Writer });
    }
}
