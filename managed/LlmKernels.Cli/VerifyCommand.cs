using System.CommandLine;
using LlmKernels.Interop;
using LlmKernels.Verification;
using Spectre.Console;

namespace LlmKernels.Cli;

/// <summary>`llmk verify`: every kernel of every available backend against the double-precision oracles, on
/// fresh random inputs, as a table of errors with pass/fail. Exit code 1 when anything fails.</summary>
internal static class VerifyCommand
{
    public static Command Create()
    {
        var seedOption = new Option<int?>("--seed") { Description = "Seed of the random inputs (default: fresh, printed)" };
        var kernelOption = new Option<string?>("--kernel") { Description = "Only kernels whose name contains this text" };
        var backendOption = new Option<string>("--backend")
        {
            Description = "all, cpu or cuda",
            DefaultValueFactory = _ => "all",
        };
        var command = new Command("verify", "Check every kernel of every available backend against the reference");
        command.Options.Add(seedOption);
        command.Options.Add(kernelOption);
        command.Options.Add(backendOption);
        command.SetAction(parse => Run(parse.GetValue(seedOption) ?? Random.Shared.Next(), parse.GetValue(kernelOption), parse.GetValue(backendOption)!));
        return command;
    }

    private static int Run(int seed, string? kernelFilter, string backend)
    {
        var library = NativeLibraryLoader.Loaded;
        AnsiConsole.MarkupLineInterpolated($"[bold]llmk verify[/]  seed [yellow]{seed}[/]  library {library.Path} ({library.Version})");

        var contexts = new List<Context>();
        if (backend is "all" or "cpu")
            contexts.Add(Context.CreateCpu());
        if (backend is "all" or "cuda")
        {
            var cuda = Context.TryCreateCuda(out var reason);
            if (cuda is not null)
                contexts.Add(cuda);
            else if (backend == "cuda")
            {
                AnsiConsole.MarkupLineInterpolated($"[red]CUDA unavailable:[/] {reason}");
                return 1;
            }
            else
                AnsiConsole.MarkupLineInterpolated($"[grey]CUDA backend skipped: {reason}[/]");
        }

        var checks = Checks.All().Where(c => kernelFilter is null || c.Kernel.Contains(kernelFilter, StringComparison.OrdinalIgnoreCase)).ToList();
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumns("backend", "kernel", "case", "dtype", "max abs", "rel L2", "bound", "result");
        int passed = 0, failed = 0;
        foreach (var ctx in contexts)
        {
            foreach (var check in checks)
            {
                CheckResult result;
                try
                {
                    result = check.Run(ctx, seed);
                }
                catch (LlmkException e)
                {
                    failed++;
                    table.AddRow(ctx.ToString(), check.Kernel, check.Case, check.DType.ToString(), "", "", "", $"[red]ERROR {Markup.Escape(e.Message)}[/]");
                    continue;
                }
                if (result.Passed) passed++; else failed++;
                table.AddRow(ctx.ToString(), result.Kernel, Markup.Escape(result.Case), result.DType.ToString(),
                    $"{result.Errors.MaxAbs:E2}", $"{result.Errors.RelL2:E2}", $"{result.Tolerance:E0}",
                    result.Passed ? "[green]pass[/]" : $"[red]FAIL{(result.Errors.NonFinite > 0 ? $" ({result.Errors.NonFinite} non-finite)" : "")}[/]");
            }
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"{passed} passed, {failed} failed  (seed {seed}; replay with --seed {seed})");
        foreach (var ctx in contexts)
            ctx.Dispose();
        return failed == 0 ? 0 : 1;
    }
}
